//! SIGKILL of the sender or the receiver at ten points of a transfer (5% to 68% across): each
//! restart resumes, every file arrives bit-exact, and no temp file is left behind.

#[path = "support/proc.rs"]
mod proc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proc::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
/// A restarted receiver hears from the sender within this: the sender notices the old
/// connection is gone (idle timeout, 5 s) and dials again after 0.5 s.
const RESUME_WAIT: Duration = Duration::from_secs(30);

fn node(dir: &Path, name: &str, listen: &str) -> std::process::Command {
    proc::loopback_node(&dir.join(name), name, listen)
}

fn receiver(dir: &Path, listen: &str) -> NodeProc {
    let mut c = node(dir, "beta", listen);
    c.arg("--dest").arg(dir.join("down")).arg("--yes");
    NodeProc::spawn_with(c, "receive")
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".part") {
                out.push(e.path());
            }
        }
    }
    out
}

/// What the sender said last: its most recent transfer states, for a failure's message.
fn last_states(a: &mut NodeProc) -> Vec<String> {
    a.drain()
        .iter()
        .rev()
        .take(4)
        .map(|v| v["transfer"]["state"].to_string() + " " + &v["transfer"]["reason"].to_string())
        .collect()
}

#[test]
fn ten_kills_at_varied_points_each_resume_to_a_bit_exact_file() {
    let t = tempfile::tempdir().unwrap();
    let big = t.path().join("big.bin");
    let data: Vec<u8> = (0..(256u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 23) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    let big = big.to_string_lossy().into_owned();
    let mut kept_total = 0.0;
    for run in 0..10u64 {
        let kill_receiver = run % 2 == 0;
        let dir = t.path().join(format!("run-{run}"));
        let mut b = receiver(&dir, "127.0.0.1:0");
        let addr = format!("127.0.0.1:{}", b.port());
        // No --connect: the sender's own resume loop redials the receiver where it last was
        // (the double dial of --connect has its own test in spacedrop_cli.rs).
        let mut a =
            NodeProc::spawn_args(node(&dir, "alpha", "127.0.0.1:0"), &["send", &addr, &big]);
        // A different point each run: from 5% to 68% of the file across.
        let at = ((0.05 + 0.07 * run as f64) * data.len() as f64) as u64;
        let started = a.expect("transfer", WAIT, |v| v["transfer"]["id"].is_string());
        let id = started["transfer"]["id"].as_str().unwrap().to_string();
        // The point is what the receiver's temp file holds, polled every millisecond. It was
        // read from the sender's events, which come at most 4 a second: 75 MB apart at full
        // speed on a quiet machine, so a late point could land after the transfer's end, and
        // the run failed as "no resume" (the CI-only failure of earlier stops).
        let part = dir.join("down").join(format!(".ferry-{id}-0.part"));
        let waiting = Instant::now();
        while std::fs::metadata(&part).map_or(0, |m| m.len()) < at {
            assert!(
                !dir.join("down/big.bin").exists(),
                "run {run}: finished before the kill point"
            );
            assert!(
                waiting.elapsed() < WAIT,
                "run {run}: {at} bytes never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let victim = if kill_receiver { "receiver" } else { "sender" };
        let t0 = Instant::now();
        let mut reached = None;
        let part_len = || std::fs::metadata(&part).map_or(0, |m| m.len());
        // What the receiver's temp file holds once the victim is dead: a resume must keep at
        // least this (a killed receiver's file stays as it is; a live one's only grows).
        let on_disk;
        let done = if kill_receiver {
            b.kill9();
            on_disk = part_len();
            let mut b2 = receiver(&dir, &addr);
            let ended = |v: &Value| {
                v["transfer"]["id"] == id.as_str()
                    && matches!(
                        v["transfer"]["state"].as_str(),
                        Some("done" | "failed" | "cancelled")
                    )
            };
            // The resume must reach this receiver, the first one restarted: no second restart.
            let resumed = b2.try_expect("transfer", RESUME_WAIT, |v| {
                v["transfer"]["id"] == id.as_str()
            });
            if resumed.is_none() {
                panic!(
                    "run {run}: no resume to the restarted receiver in {RESUME_WAIT:?}; sender's last states: {:?}",
                    last_states(&mut a)
                );
            }
            reached = Some(t0.elapsed());
            let end = b2.expect("transfer", WAIT, ended);
            assert_eq!(a.wait_exit(WAIT), 0, "run {run}: sender did not finish");
            end
        } else {
            a.kill9();
            on_disk = part_len();
            let mut a2 = NodeProc::spawn_args(
                node(&dir, "alpha", "127.0.0.1:0"),
                &["transfers", "resume", &id],
            );
            let end = b.expect("transfer", WAIT, |v| {
                v["transfer"]["id"] == id.as_str()
                    && matches!(
                        v["transfer"]["state"].as_str(),
                        Some("done" | "failed" | "cancelled")
                    )
            });
            let code = a2.wait_exit(WAIT);
            assert_eq!(
                code,
                0,
                "run {run}: resumed sender did not finish: {:?}",
                a2.drain()
            );
            end
        };
        assert_eq!(done["transfer"]["state"], "done", "run {run}: {done}");
        assert!(
            std::fs::read(dir.join("down/big.bin")).unwrap() == data,
            "run {run}: the file differs"
        );
        assert!(
            parts(&dir.join("down")).is_empty(),
            "run {run}: temp files left"
        );
        // A restart from byte 0 ends bit-exact too: the resume must have kept the bytes.
        let resumed = done["transfer"]["bytes_resumed"].as_u64().unwrap();
        assert!(
            on_disk >= at && resumed >= on_disk && resumed < data.len() as u64,
            "run {run}: resumed with {resumed} bytes kept; {on_disk} were on disk after the kill"
        );
        let kept = resumed as f64 / data.len() as f64;
        kept_total += kept;
        let reached = reached.map_or(String::new(), |r| {
            format!(", resumed to it {:.2} s after the kill", r.as_secs_f64())
        });
        println!(
            "run {run}: killed the {victim}; done {:.2} s after the kill{reached}, {:.0}% kept across it ({:.1} MB; {:.1} MB on disk just after the kill)",
            t0.elapsed().as_secs_f64(),
            kept * 100.0,
            resumed as f64 / 1e6,
            on_disk as f64 / 1e6
        );
    }
    println!(
        "10 kills: on average {:.0}% of the file was kept across a kill",
        kept_total * 10.0
    );
}
