//! Real `ferry` processes whose `--json` lines a test reads.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// `ferry` for a node on loopback with discovery off (the host namespace never runs mDNS).
pub fn loopback_node(data_dir: &std::path::Path, name: &str, listen: &str) -> Command {
    let mut c = ferry();
    c.args([
        "--no-discovery",
        "--listen",
        listen,
        "--name",
        name,
        "--data-dir",
    ])
    .arg(data_dir);
    c
}

/// A finished command's exit code and its `--json` lines.
pub fn json_output(out: std::process::Output) -> (i32, Vec<Value>) {
    let lines = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

/// A running `ferry … --json node` with its output lines arriving on a channel.
pub struct NodeProc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    pub started: Value,
    pub started_at: Instant,
    /// The last lines read, for a failure's message.
    recent: std::collections::VecDeque<Value>,
}

impl NodeProc {
    /// Spawns `cmd` (already carrying its global options) with `--json node`.
    pub fn spawn(cmd: Command) -> NodeProc {
        NodeProc::spawn_with(cmd, "node")
    }

    /// Spawns `cmd` with `--json SUBCOMMAND` (`node` or `receive`).
    pub fn spawn_with(cmd: Command, subcommand: &str) -> NodeProc {
        let mut p = NodeProc::spawn_args(cmd, &[subcommand]);
        p.started = p.expect("node_started", Duration::from_secs(10), |_| true);
        p
    }

    /// Spawns `cmd` with `--json ARGS…`, for commands that print no `node_started`.
    pub fn spawn_args(mut cmd: Command, args: &[&str]) -> NodeProc {
        let started_at = Instant::now();
        let mut child = cmd
            .arg("--json")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferry");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(e) => panic!("not JSON: {line:?}: {e}"),
                }
            }
        });
        let stdin = child.stdin.take();
        NodeProc {
            child,
            stdin,
            lines,
            started: Value::Null,
            started_at,
            recent: Default::default(),
        }
    }

    /// Every line still unread (for a failure's message).
    pub fn drain(&mut self) -> Vec<Value> {
        let mut v = vec![];
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            v.push(l);
        }
        v
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn id(&self) -> String {
        self.started["id"].as_str().unwrap().to_string()
    }

    pub fn port(&self) -> u16 {
        let listen = self.started["listen"].as_str().unwrap();
        listen.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    /// Waits for a line of type `ty` (or any of `a|b`) that satisfies `f`, skipping others.
    pub fn expect(&mut self, ty: &str, within: Duration, f: impl Fn(&Value) -> bool) -> Value {
        match self.try_expect(ty, within, f) {
            Some(v) => v,
            None => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "no {ty} within {within:?}; process {}; last lines: {:?}",
                    status.map_or("still running".to_string(), |s| format!("exited: {s}")),
                    self.recent
                )
            }
        }
    }

    pub fn try_expect(
        &mut self,
        ty: &str,
        within: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    if self.recent.len() == 8 {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(v.clone());
                    if ty.split('|').any(|t| v["type"] == t) && f(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `quit` on stdin: the clean path (goodbye to peers).
    pub fn quit(&mut self) {
        self.send("quit");
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
