//! The `ferry` command with LocalSend devices, as real processes: localsendd (PyPI; an
//! independent LocalSend v2 daemon) in host 0 and `ferry` in host 1 of a virtual LAN of
//! network namespaces the test creates (multicast included, nothing reaches the host's
//! interfaces). `ferry peers` lists the device, `ferry receive --yes --once` takes a folder
//! from it, `ferry send ALIAS PATH` sends to it, and `ferry transfers` lists both.
//!
//! Needs root and scripts/setup-localsend.sh; otherwise SKIPPED (a failure under CI=true).

#[path = "../../ferry-localsend/tests/lsd/mod.rs"]
mod lsd;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lsd::*;
use serde_json::{json, Value};

const FERRY: usize = 1;
const LSD: usize = 0;

fn ferry(lan: &Lan, data: &Path, args: &[&str]) -> Command {
    let mut c = lan.command(FERRY, env!("CARGO_BIN_EXE_ferry"));
    c.args([
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "ferry-cli",
        "--json",
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Runs `cmd` to its end (see [`finish`]).
fn output(mut cmd: Command, secs: u64) -> Output {
    finish(cmd.spawn().unwrap(), secs)
}

/// Waits for `child` to end; after `secs`, kills it and fails with what it printed.
fn finish(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "ferry did not end within {secs}s:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn ferry_lists_receives_from_and_sends_to_a_localsend_device() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-phone", &[]);
    let (data, dest, src) = (tmp(), tmp(), tmp());

    // Found by multicast, its certificate shown.
    let o = output(ferry(&lan, data.path(), &["peers", "--wait", "4s"]), 30);
    let listed = lines(&o)
        .into_iter()
        .find(|l| l["type"] == "localsend_devices")
        .expect("a localsend_devices line");
    let phone = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["alias"] == "lsd-phone")
        .unwrap_or_else(|| panic!("lsd-phone not listed: {listed}"));
    assert_eq!(phone["verified"], true, "{phone}");
    assert_eq!(phone["address"], format!("{}:53317", lan.host_ip(LSD)));

    // localsendd -> ferry receive --yes --once: the folder lands whole, and ferry exits 0.
    for i in 0..30 {
        let sub = if i % 3 == 0 {
            src.path().join("sub")
        } else {
            src.path().to_path_buf()
        };
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("n{i}.txt")),
            format!("note {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    let dest_s = dest.path().to_str().unwrap();
    let receiver = ferry(
        &lan,
        data.path(),
        &["--dest", dest_s, "--yes", "receive", "--once"],
    )
    .spawn()
    .unwrap();
    let mut ctl = lsd.ctl();
    let files: Vec<String> = std::fs::read_dir(src.path())
        .unwrap()
        .chain(std::fs::read_dir(src.path().join("sub")).unwrap())
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.path().display().to_string())
        .collect();
    assert_eq!(files.len(), 30);
    // The receiver needs a moment to listen: localsendd's first try may find no one there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let since = now();
        ctl.call(
            "send",
            json!({"to": lan.host_ip(FERRY).to_string(), "files": files}),
        )
        .unwrap();
        let r = ctl.result_after(since, 60);
        if r["kind"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "localsendd could not send: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let o = finish(receiver, 60);
    let status = o.status;
    assert!(status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let done = lines(&o)
        .into_iter()
        .rev()
        .find(|l| l["type"] == "transfer")
        .expect("a transfer line");
    assert_eq!(done["transfer"]["state"], "done", "{done}");
    assert_eq!(done["transfer"]["via"]["kind"], "localsend", "{done}");
    for f in &files {
        let name = Path::new(f).file_name().unwrap();
        assert_eq!(
            std::fs::read(dest.path().join(name)).unwrap(),
            std::fs::read(f).unwrap(),
            "{name:?}"
        );
    }

    // ferry send ALIAS PATH -> localsendd, accepted there.
    let photo = src.path().join("photo.bin");
    std::fs::write(
        &photo,
        (0..300_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let accept = std::thread::spawn(move || ctl.answer_next(true));
    let o = output(
        ferry(
            &lan,
            data.path(),
            &["send", "lsd-phone", photo.to_str().unwrap()],
        ),
        60,
    );
    accept.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(lsd.downloads.join("photo.bin")).unwrap(),
        std::fs::read(&photo).unwrap()
    );

    // Both are listed like any transfer, marked LocalSend.
    let o = output(ferry(&lan, data.path(), &["transfers"]), 30);
    let t: Vec<Value> = lines(&o)
        .into_iter()
        .find(|l| l["type"] == "transfers")
        .and_then(|l| l["transfers"].as_array().cloned())
        .expect("a transfers line");
    assert_eq!(t.len(), 2, "{t:?}");
    for x in &t {
        assert_eq!(x["state"], "done", "{x}");
        assert_eq!(x["via"]["kind"], "localsend", "{x}");
        assert_eq!(x["peer_name"], "lsd-phone", "{x}");
    }
    drop(lsd);
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
