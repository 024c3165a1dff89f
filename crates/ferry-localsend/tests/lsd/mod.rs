//! localsendd (PyPI; an independent LocalSend v2 daemon) run inside a test's network
//! namespace, driven through its JSON-lines control socket, and Ferry's LocalSend side run
//! in-process inside another namespace (a thread that `setns`es before building its runtime).
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Write};

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../../../ferry-cli/tests/support/netns.rs"]
pub mod netns;

pub use netns::Lan;

/// The localsendd from scripts/setup-localsend.sh (or $FERRY_LOCALSENDD).
pub fn localsendd_bin() -> Option<PathBuf> {
    let p = std::env::var_os("FERRY_LOCALSENDD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/localsendd-venv/bin/localsendd")
        });
    p.exists().then_some(p)
}

/// A LAN of `hosts` namespaces and localsendd, or None (SKIPPED) when this machine cannot;
/// under CI that is a failure instead.
pub fn lan(hosts: usize) -> Option<(Lan, PathBuf)> {
    let why = match (netns::available(), localsendd_bin()) {
        (Ok(()), Some(bin)) => return Some((Lan::new(hosts).expect("virtual LAN"), bin)),
        (Err(e), _) => format!("needs root and iproute2 for network namespaces ({e})"),
        (_, None) => "localsendd not installed: run scripts/setup-localsend.sh".to_string(),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("LocalSend interop tests cannot run in CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs `f` on a runtime whose threads live in namespace `ns`; panics propagate.
pub fn in_netns<F, Fut>(ns: &str, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ns = ns.to_string();
    let t = std::thread::spawn(move || {
        let fd = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
        // SAFETY: setns on a descriptor we own, for this thread only (CLONE_NEWNET).
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f());
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

/// A running localsendd.
pub struct Lsd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub downloads: PathBuf,
    pub alias: String,
}

impl Drop for Lsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lsd {
    /// The daemon's process id (`ip netns exec` runs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(lan: &Lan, host: usize, bin: &Path, alias: &str, extra: &[&str]) -> Lsd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ctl.sock");
        let downloads = dir.path().join("downloads");
        let mut cmd = lan.command(host, bin.to_str().unwrap());
        cmd.args([
            "--alias",
            alias,
            "--port",
            "53317",
            "--log-level",
            "warning",
        ])
        .arg("--socket")
        .arg(&socket)
        .arg("--download-dir")
        .arg(&downloads)
        .args(extra)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn localsendd");
        let lsd = Lsd {
            child,
            dir,
            socket,
            downloads,
            alias: alias.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&lsd.socket).is_err() {
            assert!(Instant::now() < deadline, "localsendd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        lsd
    }

    /// A control connection (while one is open, localsendd asks before receiving). A thread
    /// reads everything the daemon pushes, as it drops clients that fall behind.
    pub fn ctl(&self) -> Ctl {
        let s = UnixStream::connect(&self.socket).expect("control socket");
        let (tx, answers) = std::sync::mpsc::channel();
        let r = BufReader::new(s.try_clone().unwrap());
        std::thread::spawn(move || {
            for line in r.lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if !v["id"].is_null() && tx.send(v).is_err() {
                    return;
                }
            }
        });
        Ctl {
            answers,
            w: s,
            next: 0,
        }
    }

    /// Files received, by name, sorted.
    pub fn received(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.downloads)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub struct Ctl {
    answers: std::sync::mpsc::Receiver<Value>,
    w: UnixStream,
    next: u64,
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.w.shutdown(std::net::Shutdown::Both);
    }
}

impl Ctl {
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        let line = json!({"id": id, "method": method, "params": params}).to_string() + "\n";
        self.w.write_all(line.as_bytes()).unwrap();
        loop {
            let v = self
                .answers
                .recv_timeout(Duration::from_secs(30))
                .expect("localsendd answers its control socket");
            if v["id"] != json!(id) {
                continue;
            }
            return match v["ok"].as_bool() {
                Some(true) => Ok(v["result"].clone()),
                _ => Err(v["error"].clone()),
            };
        }
    }

    pub fn state(&mut self) -> Value {
        self.call("get_state", json!({})).expect("get_state")
    }

    /// Polls the state until `f` holds (at most `secs`).
    pub fn wait(&mut self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.state();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "localsendd: no {what}; state: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the last result newer than `since` (seconds since the epoch).
    pub fn result_after(&mut self, since: f64, secs: u64) -> Value {
        self.wait("result", secs, |s| {
            s["result"]["at"].as_f64().is_some_and(|t| t >= since)
        })["result"]
            .clone()
    }

    /// Answers localsendd's next incoming offer (a control connection makes it ask).
    pub fn answer_next(&mut self, accept: bool) {
        assert!(
            self.try_answer_next(accept, 30),
            "localsendd: no incoming offer; state: {}",
            self.state()
        );
    }

    /// Answers the next offer localsendd shows within `secs`; false if none came.
    pub fn try_answer_next(&mut self, accept: bool, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let s = loop {
            let s = self.state();
            if !s["incoming"].is_null() {
                break s;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let sid = s["incoming"]["sessionId"].as_str().unwrap().to_string();
        self.call(
            "confirm_receive",
            json!({"sessionId": sid, "confirmed": accept}),
        )
        .unwrap();
        true
    }

    pub fn fingerprint(&mut self) -> String {
        self.state()["self"]["fingerprint"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for hundreds of MiB.
pub fn fill(path: &Path, size: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut left = size;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

pub fn sha256(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    ferry_localsend::tls::hex_upper(ctx.finish().as_ref())
}
