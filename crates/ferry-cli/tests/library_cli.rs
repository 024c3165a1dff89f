//! `ferry library` / `pair` / `members` / `unpair` as real processes on 127.0.0.1.

#[path = "support/proc.rs"]
mod proc;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proc::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn base(dir: &Path, name: &str) -> Command {
    proc::loopback_node(&dir.join(name), name, "127.0.0.1:0")
}

/// Runs a one-shot command to completion: its exit code and JSON lines.
fn run(dir: &Path, name: &str, args: &[&str]) -> (i32, Vec<Value>) {
    proc::json_output(base(dir, name).arg("--json").args(args).output().unwrap())
}

fn members(dir: &Path, name: &str, lib: &str) -> Vec<(String, String)> {
    let (code, lines) = run(dir, name, &["members", lib]);
    assert_eq!(code, 0, "{lines:?}");
    lines[0]["library"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn is_state(v: &Value, state: &str) -> bool {
    v["pairing"]["state"] == state
}

#[test]
fn pair_on_the_command_line_list_members_survive_a_crash_and_unpair() {
    let t = tempfile::tempdir().unwrap();
    let (code, lines) = run(t.path(), "alpha", &["library", "create", "Family"]);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["library"]["name"], "Family");
    let mut beta = NodeProc::spawn(base(t.path(), "beta"));
    let addr = format!("{}@127.0.0.1:{}", beta.id(), beta.port());

    // alpha asks; both show the same code; both users type y.
    let mut pair = NodeProc::spawn_args(
        base(t.path(), "alpha"),
        &["pair", &addr, "--library", "fam"],
    );
    let a = pair.expect("pairing", WAIT, |v| is_state(v, "confirm"));
    let b = beta.expect("pairing", WAIT, |v| is_state(v, "confirm"));
    let code_a = a["pairing"]["code"].as_str().unwrap().to_string();
    assert_eq!(b["pairing"]["code"].as_str(), Some(code_a.as_str()));
    assert_eq!(b["pairing"]["library_name"], "Family");
    assert_eq!(b["pairing"]["peer_name"], "alpha");
    eprintln!("both devices show {code_a}");
    beta.send("y");
    pair.send("y");
    pair.expect("pairing", WAIT, |v| is_state(v, "done"));
    assert_eq!(pair.wait_exit(WAIT), 0);
    beta.expect("pairing", WAIT, |v| is_state(v, "done"));
    // `members` reads the database, so it works while beta's node runs.
    let expected = vec![
        ("alpha".to_string(), "member".to_string()),
        ("beta".to_string(), "member".to_string()),
    ];
    let mut got = members(t.path(), "beta", "Family");
    got.sort();
    assert_eq!(got, expected);

    // gamma starts pairing beta into its own library and is killed while the codes show:
    // nothing is left on either side, and beta is told.
    run(t.path(), "gamma", &["library", "create", "Work"]);
    let mut crash = NodeProc::spawn_args(
        base(t.path(), "gamma"),
        &["pair", &addr, "--library", "Work"],
    );
    beta.expect("pairing", WAIT, |v| is_state(v, "confirm"));
    crash.expect("pairing", WAIT, |v| is_state(v, "confirm"));
    crash.kill9();
    let failed = beta.expect("pairing", WAIT, |v| is_state(v, "failed"));
    eprintln!("beta after gamma's crash: {}", failed["pairing"]["reason"]);
    let (_, libs) = run(t.path(), "beta", &["library", "list"]);
    let names: Vec<_> = libs[0]["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Family"]);
    assert_eq!(members(t.path(), "gamma", "Work").len(), 1);

    // alpha removes beta; a short-lived alpha node reaches beta where it was last seen.
    let (code, lines) = run(
        t.path(),
        "alpha",
        &["unpair", "beta", "--library", "Family"],
    );
    assert_eq!(code, 0, "{lines:?}");
    let removed = beta.expect("library", WAIT, |v| {
        v["library"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "beta" && m["state"] == "removed")
    });
    assert_eq!(removed["library"]["removed"], true);
    beta.quit();
    let (code, _) = run(
        t.path(),
        "alpha",
        &["library", "delete", "Family", "--wait", "1s"],
    );
    assert_eq!(code, 0);
    let (_, libs) = run(t.path(), "alpha", &["library"]);
    assert_eq!(libs[0]["libraries"].as_array().unwrap().len(), 0);
}
