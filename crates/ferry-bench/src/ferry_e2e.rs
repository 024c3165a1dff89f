//! Ferry end to end: a real `ferry receive --once` and a real `ferry send`, each its own
//! process, on loopback, driven through their `--json` event lines. Every run checks that what
//! arrived is byte-identical (BLAKE3 of source and destination).
//!
//! Two times per run: the send process from spawn to exit (what a user waits for: start,
//! handshake, offer, data, final fsync, shutdown), and the transfer phase, from the receiver's
//! first `transferring` line to its `done` line (the data path alone, until the data is
//! verified and durable).
//!
//! Two Ferry misbehaviours seen while writing this are tolerated and reported, not hidden:
//! a sender that never exits after its `receive --once` peer finished (it misses the final
//! `done` and waits as `interrupted`), and a `send ADDR` whose dial races the `--connect ADDR`
//! dial to the same address and fails ("duplicate") before offering anything.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::procfs::{self, ProcStats};
use crate::{data, mb_per_s, size_label, Limits, Row, Sizes, MIB};

const FINAL_STATES: &[&str] = &["done", "failed", "rejected", "cancelled"];

/// One JSON line from a ferry process, with the moment it was read.
#[derive(Clone)]
struct Line {
    at: Instant,
    v: Value,
}

impl Line {
    /// The `transfer` object of a transfer event.
    fn transfer(&self) -> Option<&Value> {
        (self.v["type"] == "transfer").then(|| &self.v["transfer"])
    }
}

fn state(t: &Value) -> &str {
    t["state"].as_str().unwrap_or("")
}

fn num(t: &Value, field: &str) -> u64 {
    t[field].as_u64().unwrap_or(0)
}

/// Last lines of a log file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A running `ferry` process: its JSON lines arrive on a channel; /proc is sampled meanwhile.
struct Ferry {
    role: String,
    child: Child,
    events: mpsc::UnboundedReceiver<Line>,
    /// Every line taken from `events` so far.
    lines: Vec<Line>,
    stats: Arc<Mutex<ProcStats>>,
    sampler: JoinHandle<()>,
    log: PathBuf,
}

/// A ferry process that has exited.
struct Finished {
    /// None when we had to kill it.
    status: Option<ExitStatus>,
    exited: Instant,
    /// Still running well after its peer had exited, so killed.
    stuck: bool,
    lines: Vec<Line>,
    stats: ProcStats,
}

/// How long a process may outlive its peer before it counts as stuck.
const GRACE: Duration = Duration::from_secs(10);

impl Ferry {
    fn spawn(bin: &Path, role: &str, args: &[OsString], log: PathBuf) -> Result<Ferry> {
        let mut child = Command::new(bin)
            // Never mDNS: the bench stays on loopback.
            .arg("--no-discovery")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stats = Arc::new(Mutex::new(ProcStats::default()));
        let (tx, events) = mpsc::unbounded_channel();
        let st = stats.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(text)) = lines.next_line().await {
                let at = Instant::now();
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let line = Line { at, v };
                // The process exits right after a final state: take its figures now.
                if line
                    .transfer()
                    .is_some_and(|t| FINAL_STATES.contains(&state(t)))
                {
                    procfs::sample(pid, &st);
                }
                let _ = tx.send(line);
            }
        });
        Ok(Ferry {
            role: role.into(),
            child,
            events,
            lines: vec![],
            sampler: procfs::spawn_sampler(pid, stats.clone()),
            stats,
            log,
        })
    }

    /// What went wrong, as far as the process told us.
    fn context(&self) -> String {
        let last = self
            .lines
            .iter()
            .rev()
            .find_map(Line::transfer)
            .map(|t| {
                format!(
                    "last state {} {}/{} {}",
                    state(t),
                    num(t, "bytes_done"),
                    num(t, "bytes_total"),
                    t["reason"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "no transfer lines".into());
        format!("{}: {last}; stderr: {}", self.role, tail(&self.log, 4))
    }

    /// The next line, or None once stdout is closed.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Line>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Err(_) => bail!("timed out; {}", self.context()),
            Ok(Some(l)) => {
                self.lines.push(l.clone());
                Ok(Some(l))
            }
            Ok(None) => Ok(None),
        }
    }

    /// Waits for `node_started`; returns the address the node listens on and its fingerprint.
    async fn started(&mut self, deadline: Instant) -> Result<(SocketAddr, String)> {
        while let Some(l) = self.next(deadline).await? {
            if l.v["type"] == "node_started" {
                let listen = l.v["listen"].as_str().unwrap_or_default();
                let addr = listen
                    .parse()
                    .with_context(|| format!("node_started with listen '{listen}'"))?;
                return Ok((addr, l.v["id"].as_str().unwrap_or_default().to_string()));
            }
        }
        bail!("exited before starting; {}", self.context())
    }

    /// Waits for the process to exit; if `give_up` completes first, kills it and marks it stuck.
    async fn finish(
        mut self,
        deadline: Instant,
        give_up: impl std::future::Future<Output = ()>,
    ) -> Result<Finished> {
        let d = tokio::time::Instant::from_std(deadline);
        let (status, stuck) = tokio::select! {
            s = self.child.wait() => (Some(s?), false),
            () = give_up => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                (None, true)
            }
            () = tokio::time::sleep_until(d) => {
                let _ = self.child.start_kill();
                bail!("did not finish in time; {}", self.context())
            }
        };
        let exited = Instant::now();
        // Its stdout is closed now; take what is still queued.
        while let Ok(Some(l)) =
            tokio::time::timeout(Duration::from_secs(5), self.events.recv()).await
        {
            self.lines.push(l);
        }
        self.sampler.abort();
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        Ok(Finished {
            status,
            exited,
            stuck,
            lines: self.lines,
            stats,
        })
    }

    /// SIGKILL, as a crash or power cut would.
    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.sampler.abort();
    }
}

/// Waits for both ends of a transfer. Each may outlive the other by [`GRACE`]; after that it
/// is killed and marked stuck, so one hung process costs seconds, not the whole deadline.
async fn finish_pair(send: Ferry, recv: Ferry, deadline: Instant) -> Result<(Finished, Finished)> {
    let (send_gone, send_gone_rx) = tokio::sync::oneshot::channel::<()>();
    let (recv_gone, recv_gone_rx) = tokio::sync::oneshot::channel::<()>();
    // A dropped sender also wakes the waiting side: any way out of `finish` counts as gone.
    let after = |rx: tokio::sync::oneshot::Receiver<()>| async move {
        let _ = rx.await;
        tokio::time::sleep(GRACE).await;
    };
    let s = async move {
        let r = send.finish(deadline, after(recv_gone_rx)).await;
        drop(send_gone);
        r
    };
    let r = async move {
        let r = recv.finish(deadline, after(send_gone_rx)).await;
        drop(recv_gone);
        r
    };
    let (s, r) = tokio::join!(s, r);
    Ok((s.context("sender")?, r.context("receiver")?))
}

impl Finished {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The message of the first `error` line, if any.
    fn error(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.v["type"] == "error")
            .and_then(|l| l.v["message"].as_str())
    }

    fn transfers(&self) -> impl Iterator<Item = (Instant, &Value)> {
        self.lines
            .iter()
            .filter_map(|l| l.transfer().map(|t| (l.at, t)))
    }

    fn first(&self, wanted: &str) -> Option<Instant> {
        self.transfers()
            .find(|(_, t)| state(t) == wanted)
            .map(|(at, _)| at)
    }

    /// The final `done` line, or why there is none.
    fn done(&self, role: &str) -> Result<(Instant, &Value)> {
        match self.transfers().last() {
            Some((at, t)) if state(t) == "done" => Ok((at, t)),
            Some((_, t)) => bail!("{role} ended in state {}: {}", state(t), t),
            None => bail!(
                "{role} printed no transfer lines (exit {:?}): {}",
                self.status,
                self.error().unwrap_or("")
            ),
        }
    }
}

/// One transfer between a fresh sender and receiver, both exited.
struct Run {
    spawned: Instant,
    send: Finished,
    recv: Finished,
    dest: PathBuf,
}

impl Run {
    /// Spawn of the send process to its exit; None if it never exited by itself.
    fn process_secs(&self) -> Option<f64> {
        (!self.send.stuck).then(|| (self.send.exited - self.spawned).as_secs_f64())
    }

    /// Spawn of the send process to the receiver's exit: a lower bound for a stuck sender.
    fn until_receiver_exit(&self) -> f64 {
        (self.recv.exited - self.spawned).as_secs_f64()
    }

    /// The receiver's first `transferring` line to its `done` line.
    fn phase_secs(&self) -> Result<f64> {
        let start = self
            .recv
            .first("transferring")
            .context("no transferring line")?;
        let (end, _) = self.recv.done("receiver")?;
        Ok((end - start).as_secs_f64())
    }

    /// A row for the whole send process, per `unit` of work.
    fn process_row(&self, name: String, work: f64, unit: &str) -> Row {
        match self.process_secs() {
            Some(secs) => Row::new(
                name,
                work / secs,
                unit,
                format!("{secs:.2}s spawn->exit, incl. start, handshake, final fsync"),
            ),
            None => Row::new(
                name,
                work / self.until_receiver_exit(),
                unit,
                format!(
                    "FERRY BUG: sender never exited after the receiver's done (stuck {}), killed; \
                     figure: spawn->receiver exit {:.2}s",
                    self.send.transfers().last().map_or("?", |(_, t)| state(t)),
                    self.until_receiver_exit()
                ),
            ),
        }
    }

    /// Where each process spent its CPU, to stderr.
    fn print_cpu(&self) {
        let phase = self.phase_secs().unwrap_or(f64::NAN);
        for (role, f) in [("sender", &self.send), ("receiver", &self.recv)] {
            eprintln!(
                "   {role}: CPU {:.1}s ({:.0}% of the {phase:.1}s phase), peak RSS {} MiB; threads: {}",
                f.stats.cpu_secs(),
                100.0 * f.stats.cpu_secs() / phase,
                f.stats.hwm_kib / 1024,
                f.stats.thread_summary()
            );
        }
    }
}

/// Size of the largest file in `dir` (while receiving one file: its partial file).
fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

/// Roomy: a slow run is a figure too, only a hang is an error.
fn deadline_for(bytes: u64, files: usize) -> Instant {
    Instant::now() + Duration::from_secs(120 + bytes / 5_000_000 + files as u64 / 100)
}

pub struct Ctx {
    ferry: PathBuf,
    dir: PathBuf,
    sizes: Sizes,
    /// The big source file and its hash, generated once for the big and resume workloads.
    big: Option<(PathBuf, blake3::Hash)>,
}

impl Ctx {
    pub fn new(ferry: &Path, dir: &Path, sizes: Sizes) -> Ctx {
        Ctx {
            ferry: ferry.into(),
            dir: dir.into(),
            sizes,
            big: None,
        }
    }

    fn random_file(&self, name: &str, size: u64, seed: u64) -> Result<(PathBuf, blake3::Hash)> {
        let dir = self.dir.join("src");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        let start = Instant::now();
        let hash = data::write_random_file(&path, size, seed)?;
        eprintln!(
            "   generated {} ({}) in {:.1}s",
            path.display(),
            size_label(size),
            start.elapsed().as_secs_f64()
        );
        Ok((path, hash))
    }

    fn big_source(&mut self) -> Result<(PathBuf, blake3::Hash)> {
        if self.big.is_none() {
            self.big = Some(self.random_file("big.bin", self.sizes.big, 7)?);
        }
        self.big.clone().context("big source")
    }

    /// A fresh directory for one workload, with the two nodes' data dirs and the destination.
    fn workdir(&self, tag: &str) -> Result<PathBuf> {
        let w = self.dir.join(tag);
        if w.exists() {
            std::fs::remove_dir_all(&w)?;
        }
        for sub in ["recv-data", "send-data", "dest"] {
            std::fs::create_dir_all(w.join(sub))?;
        }
        Ok(w)
    }

    fn receiver(&self, work: &Path, listen: &str, log: &str) -> Result<Ferry> {
        let args = [
            os("--listen"),
            os(listen),
            os("--data-dir"),
            os(work.join("recv-data")),
            os("--name"),
            os("recv"),
            os("--dest"),
            os(work.join("dest")),
            os("--yes"),
            os("--json"),
            os("receive"),
            os("--once"),
        ];
        Ferry::spawn(&self.ferry, "receiver", &args, work.join(log))
    }

    /// `peer` is `host:port` or `FINGERPRINT@host:port`; with `redial`, the sender's node also
    /// keeps redialing it (`--connect`).
    fn sender(&self, work: &Path, peer: &str, paths: &[&Path], redial: bool) -> Result<Ferry> {
        let mut args = vec![
            os("--listen"),
            os("127.0.0.1:0"),
            os("--data-dir"),
            os(work.join("send-data")),
            os("--name"),
            os("send"),
        ];
        if redial {
            args.extend([os("--connect"), os(peer)]);
        }
        args.extend([os("--json"), os("send"), os(peer)]);
        args.extend(paths.iter().map(|p| os(*p)));
        Ferry::spawn(&self.ferry, "sender", &args, work.join("send.log"))
    }

    /// Sends `paths` from a fresh sender to a fresh receiver and waits for both to exit.
    async fn transfer(&self, tag: &str, paths: &[&Path], deadline: Instant) -> Result<Run> {
        let work = self.workdir(tag)?;
        let mut recv = self.receiver(&work, "127.0.0.1:0", "recv.log")?;
        let (addr, _) = recv.started(deadline).await?;
        let spawned = Instant::now();
        let send = self.sender(&work, &addr.to_string(), paths, false)?;
        let (send, recv) = finish_pair(send, recv, deadline).await?;
        recv.done("receiver")?;
        ensure!(recv.succeeded(), "receiver exited with {:?}", recv.status);
        if !send.stuck {
            send.done("sender")?;
            ensure!(send.succeeded(), "sender exited with {:?}", send.status);
        }
        Ok(Run {
            spawned,
            send,
            recv,
            dest: work.join("dest"),
        })
    }

    /// Starts a sender that also `--connect`s to `addr`. If it exits before offering anything
    /// (the dial race, see the module doc), starts it again with the receiver's fingerprint
    /// pinned (`FP@addr`), which makes the two dials share one attempt. Returns it, how many
    /// starts failed, and the first failure's message.
    async fn sender_offering(
        &self,
        work: &Path,
        addr: SocketAddr,
        fingerprint: &str,
        paths: &[&Path],
        deadline: Instant,
    ) -> Result<(Ferry, usize, String)> {
        let mut first_error = String::new();
        for failed in 0..5 {
            let peer = match failed {
                0 => addr.to_string(),
                _ => format!("{fingerprint}@{addr}"),
            };
            let mut send = self.sender(work, &peer, paths, true)?;
            while let Some(l) = send.next(deadline).await? {
                if l.transfer().is_some() {
                    return Ok((send, failed, first_error));
                }
            }
            let gone = send.finish(deadline, std::future::pending()).await?;
            let error = gone.error().unwrap_or("no message").to_string();
            eprintln!("   sender start {} ({peer}) failed: {error}", failed + 1);
            if first_error.is_empty() {
                first_error = error;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("the sender never got to offer: {first_error}")
    }

    fn check_file(dest: &Path, hash: &blake3::Hash) -> Result<&'static str> {
        let got = data::hash_file(dest).with_context(|| format!("{}", dest.display()))?;
        Ok(if got == *hash {
            "identical"
        } else {
            "MISMATCH"
        })
    }

    /// Against bare quinn (the target), and against the lower of quinn and the disk's
    /// new-file write speed (what a receiver that lands data on this disk can reach at best).
    fn ratios(lim: &Limits, mbps: f64) -> String {
        let mut parts = vec![];
        match lim.quic_mbps {
            Some(q) => parts.push(format!(
                "{:.0}% of bare quinn (target >= 85%)",
                100.0 * mbps / q
            )),
            None => parts.push("bare quinn not measured (add quic)".into()),
        }
        if let Some(d) = lim.disk_write_mbps {
            let ceiling = lim.quic_mbps.map_or(d, |q| q.min(d));
            parts.push(format!(
                "{:.0}% of min(quinn, disk)",
                100.0 * mbps / ceiling
            ));
        }
        parts.join("; ")
    }

    /// CPU seconds per GiB of both processes, against bare quinn's: on a machine with few
    /// cores, this cost is what caps throughput once the processes compete for CPU.
    fn cpu_row(run: &Run, label: &str, size: u64, lim: &Limits) -> Row {
        let gib = size as f64 / crate::GIB as f64;
        let (s, r) = (
            run.send.stats.cpu_secs() / gib,
            run.recv.stats.cpu_secs() / gib,
        );
        let vs = lim.quic_cpu_per_gib.map_or(String::new(), |q| {
            format!("{:.1}x bare quinn's; ", (s + r) / q)
        });
        Row::new(
            format!("ferry {label}, CPU per GiB"),
            s + r,
            "s/GiB",
            format!(
                "{vs}sender {s:.1}s ({}), receiver {r:.1}s ({})",
                run.send.stats.thread_summary_per(gib),
                run.recv.stats.thread_summary_per(gib)
            ),
        )
    }

    /// One big file: throughput against bare quinn (target: at least 85%).
    pub async fn big(&mut self, lim: &Limits) -> Result<Vec<Row>> {
        let (src, hash) = self.big_source()?;
        let size = self.sizes.big;
        let run = self.transfer("big", &[&src], deadline_for(size, 1)).await?;
        let same = Self::check_file(&run.dest.join("big.bin"), &hash)?;
        run.print_cpu();
        let phase = mb_per_s(size, run.phase_secs()?);
        let label = size_label(size);
        let rows = vec![
            Row::new(
                format!("ferry {label}, transfer phase"),
                phase,
                "MB/s",
                format!("{}; {same}", Self::ratios(lim, phase)),
            ),
            run.process_row(
                format!("ferry {label}, send process"),
                size as f64 / 1e6,
                "MB/s",
            ),
            Self::cpu_row(&run, &label, size, lim),
        ];
        std::fs::remove_dir_all(&run.dest)?;
        Ok(rows)
    }

    /// Many small files in one folder (target: at least 5,000 files/s).
    pub async fn small(&mut self) -> Result<Vec<Row>> {
        let (n, size) = (self.sizes.small_files, self.sizes.small_size);
        let src = self.dir.join("src").join("small");
        if !src.exists() {
            std::fs::create_dir_all(&src)?;
            let mut rng = data::Rng::new(9);
            let mut buf = vec![0u8; size];
            for i in 0..n {
                rng.fill(&mut buf);
                std::fs::write(src.join(format!("f{i:05}.bin")), &buf)?;
            }
        }
        let bytes = (n * size) as u64;
        let run = self
            .transfer("small", &[&src], deadline_for(bytes, n))
            .await?;
        let (compared, bad) = data::compare_dirs(&src, &run.dest.join("small"))?;
        let same = if compared == n && bad == 0 {
            "all identical".to_string()
        } else {
            format!("{bad} of {compared} missing or different")
        };
        run.print_cpu();
        let phase = run.phase_secs()?;
        let rate = n as f64 / phase;
        let label = format!("{n} x {} KiB", size / 1024);
        let rows = vec![
            Row::new(
                format!("ferry {label}, transfer phase"),
                rate,
                "files/s",
                format!("{:.0}% of target 5000/s; {same}", rate / 50.0),
            ),
            run.process_row(format!("ferry {label}, send process"), n as f64, "files/s"),
        ];
        std::fs::remove_dir_all(&run.dest)?;
        Ok(rows)
    }

    /// Peak memory with a huge file (target: at most 64 MiB each side).
    pub async fn rss(&mut self, lim: &Limits) -> Result<Vec<Row>> {
        let size = self.sizes.huge;
        let (src, hash) = self.random_file("huge.bin", size, 11)?;
        let run = self.transfer("rss", &[&src], deadline_for(size, 1)).await?;
        let same = Self::check_file(&run.dest.join("huge.bin"), &hash)?;
        run.print_cpu();
        let label = size_label(size);
        let mib = |s: &ProcStats| s.hwm_kib as f64 / 1024.0;
        let rows = vec![
            Row::new(
                format!("ferry {label}, sender peak RSS"),
                mib(&run.send.stats),
                "MiB",
                format!(
                    "{:.0}% of target 64 MiB (VmHWM)",
                    mib(&run.send.stats) / 0.64
                ),
            ),
            Row::new(
                format!("ferry {label}, receiver peak RSS"),
                mib(&run.recv.stats),
                "MiB",
                format!(
                    "{:.0}% of target 64 MiB (VmHWM)",
                    mib(&run.recv.stats) / 0.64
                ),
            ),
            Row::new(
                format!("ferry {label}, transfer phase"),
                mb_per_s(size, run.phase_secs()?),
                "MB/s",
                format!(
                    "{}; {same}",
                    Self::ratios(lim, mb_per_s(size, run.phase_secs()?))
                ),
            ),
            Self::cpu_row(&run, &label, size, lim),
        ];
        std::fs::remove_dir_all(&run.dest)?;
        std::fs::remove_file(&src)?;
        Ok(rows)
    }

    /// The receiver is SIGKILLed past half of a big file and restarted on the same port;
    /// the sender, still running, reconnects and resumes (target: at most 55% sent again).
    pub async fn resume(&mut self) -> Result<Vec<Row>> {
        let (src, hash) = self.big_source()?;
        let size = self.sizes.big;
        let deadline = deadline_for(2 * size, 1);
        let work = self.workdir("resume")?;
        let mut recv = self.receiver(&work, "127.0.0.1:0", "recv-1.log")?;
        let (addr, fingerprint) = recv.started(deadline).await?;
        // --connect too: the sender's node keeps redialing that address while it is down.
        let (mut send, false_starts, start_error) = self
            .sender_offering(&work, addr, &fingerprint, &[&src], deadline)
            .await?;
        // Progress lines come every 250 ms (tens of MB apart), too coarse to stop at half way;
        // the partial file's size on disk is exact.
        let dest = work.join("dest");
        let killed_at = loop {
            let on_disk = largest_file(&dest);
            ensure!(on_disk < size, "ended before it could be interrupted");
            if on_disk * 2 > size {
                break on_disk;
            }
            for p in [&mut recv, &mut send] {
                if let Ok(Some(status)) = p.child.try_wait() {
                    bail!(
                        "{} exited ({status}) before half way; {}",
                        p.role,
                        p.context()
                    );
                }
            }
            ensure!(Instant::now() < deadline, "no progress; {}", recv.context());
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        recv.kill().await;
        let killed = Instant::now();
        eprintln!(
            "   receiver killed with {:.1}% on disk",
            100.0 * killed_at as f64 / size as f64
        );
        // The same port, so the sender finds it where it left it. A just-freed UDP port is
        // normally free at once; retry in case it is not.
        let mut restarted = None;
        for attempt in 1..=20 {
            let mut r =
                self.receiver(&work, &addr.to_string(), &format!("recv-2.{attempt}.log"))?;
            match r.started(Instant::now() + Duration::from_secs(5)).await {
                Ok(_) => {
                    restarted = Some(r);
                    break;
                }
                Err(e) => {
                    eprintln!("   restart attempt {attempt}: {e:#}");
                    r.kill().await;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        let recv = restarted.context("could not restart the receiver on its port")?;
        let (send, recv) = finish_pair(send, recv, deadline).await?;
        let (done_at, done) = recv.done("restarted receiver")?;
        if !send.stuck {
            send.done("sender")?;
            ensure!(send.succeeded(), "sender exited with {:?}", send.status);
        }
        let resumed = num(done, "bytes_resumed");
        let total = num(done, "bytes_total");
        ensure!(total == size, "bytes_total {total}, expected {size}");
        let resent = total.saturating_sub(resumed);
        let same = Self::check_file(&work.join("dest").join("big.bin"), &hash)?;
        let sender_resumed = send
            .transfers()
            .last()
            .map_or(0, |(_, t)| num(t, "bytes_resumed"));
        eprintln!(
            "   receiver's bytes_resumed {resumed} ({:.1} MiB), sender's {sender_resumed}; kill to done {:.1}s",
            resumed as f64 / MIB as f64,
            (done_at - killed).as_secs_f64()
        );
        let pct = 100.0 * resent as f64 / total as f64;
        let mut rows = vec![
            Row::new(
                format!("ferry resume {}, re-sent", size_label(size)),
                pct,
                "% of file",
                format!(
                    "target <= 55%; killed with {:.0}% on disk, resumed from {:.0}%; {same}",
                    100.0 * killed_at as f64 / size as f64,
                    100.0 * resumed as f64 / size as f64
                ),
            ),
            Row::new(
                format!("ferry resume {}, kill to done", size_label(size)),
                (done_at - killed).as_secs_f64(),
                "s",
                "incl. the sender noticing the loss (idle timeout) and redialing",
            ),
        ];
        if false_starts > 0 {
            rows.push(Row::text(
                "ferry resume, sender false starts",
                &false_starts.to_string(),
                "starts",
                format!(
                    "FERRY BUG: `send ADDR --connect ADDR` exited before offering ({start_error}); \
                     then used FP@ADDR"
                ),
            ));
        }
        if send.stuck {
            rows.push(Row::text(
                "ferry resume, sender exit",
                "-",
                "",
                "FERRY BUG: sender never exited after the receiver's done, killed",
            ));
        }
        std::fs::remove_dir_all(work.join("dest"))?;
        Ok(rows)
    }
}
