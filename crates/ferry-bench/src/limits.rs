//! The ceilings Ferry works under on this machine: the transport alone (bare quinn set up
//! exactly as Ferry sets it up, and TCP for scale), BLAKE3, and the disk. The two-process
//! limits re-execute this binary as the server, so each side has its own process and runtime,
//! like two `ferry` processes.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use ferry_p2p::{endpoint, tls, Identity, TransportLimits};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::data::{self, CHUNK};
use crate::procfs::{self, ProcStats};
use crate::{mb_per_s, size_label, Row};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub fn blake3(size: u64) -> Result<Vec<Row>> {
    let buf = data::random_vec(usize::try_from(size)?, 3);
    let start = Instant::now();
    let mut hasher = blake3::Hasher::new();
    // 1 MiB updates, as Ferry hashes each data record.
    for chunk in buf.chunks(CHUNK) {
        hasher.update(chunk);
    }
    std::hint::black_box(hasher.finalize());
    let secs = start.elapsed().as_secs_f64();
    Ok(vec![Row::new(
        format!("blake3 1 thread, {}", size_label(size)),
        mb_per_s(size, secs),
        "MB/s",
        "in memory; Ferry hashes every byte on both sides",
    )])
}

/// Returns the rows and the write + fsync figure.
pub fn disk(dir: &Path, size: u64) -> Result<(Vec<Row>, f64)> {
    let path = dir.join("disk-test.bin");
    // Cycle through 64 MiB of random data so the PRNG is not what gets measured.
    let pool = data::random_vec(64 << 20, 4);
    let start = Instant::now();
    let mut f = File::create(&path)?;
    let mut left = size;
    let mut at = 0;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&pool[at..at + n])?;
        at = (at + CHUNK) % pool.len();
        left -= n as u64;
    }
    let written = start.elapsed().as_secs_f64();
    f.sync_all()?;
    let total = start.elapsed().as_secs_f64();
    // After the fsync every page is clean, so DONTNEED really drops them: the read-back then
    // comes from the device (on a VM, possibly from the host's cache).
    // SAFETY: plain fadvise on a file descriptor we own.
    let dropped =
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } == 0;
    drop(f);
    let start = Instant::now();
    let mut f = File::open(&path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => got += n as u64,
        }
    }
    let read = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    ensure!(got == size, "read back {got} of {size} bytes");
    let write_mbps = mb_per_s(size, total);
    let rows = vec![
        Row::new(
            format!("disk write+fsync, {}", size_label(size)),
            write_mbps,
            "MB/s",
            format!(
                "new file: write {written:.2}s + fsync {:.2}s",
                total - written
            ),
        ),
        Row::new(
            format!("disk read back, {}", size_label(size)),
            mb_per_s(size, read),
            "MB/s",
            if dropped {
                "page cache dropped (fadvise DONTNEED)"
            } else {
                "fadvise failed: page cache"
            },
        ),
    ];
    Ok((rows, write_mbps))
}

/// The server end, running in a child process: prints `port N`, takes one transfer, prints
/// `got BYTES SECONDS LOST_PACKETS CPU_SECONDS` (seconds from its first byte to its last).
struct Server {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

impl Server {
    async fn spawn(subcommand: &str) -> Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(subcommand)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("server did not start")??
            .context("server exited")?;
        let port: u16 = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("server said '{first}'"))?;
        Ok(Server {
            child,
            lines,
            addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        })
    }

    /// Waits for the server's report: (bytes, seconds, CPU seconds).
    async fn finish(mut self) -> Result<(u64, f64, f64)> {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .context("server did not report")??
            .context("server exited without a report")?;
        let _ = self.child.wait().await;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["got", bytes, secs, _lost, cpu] => Ok((bytes.parse()?, secs.parse()?, cpu.parse()?)),
            _ => anyhow::bail!("server said '{line}'"),
        }
    }
}

fn report(got: u64, secs: f64, lost: u64) {
    println!("got {got} {secs} {lost} {}", own_cpu_secs());
}

/// CPU time (user + system) this process has used so far.
fn own_cpu_secs() -> f64 {
    let stats = std::sync::Mutex::new(ProcStats::default());
    procfs::sample(std::process::id(), &stats);
    stats.into_inner().map_or(0.0, |s| s.cpu_secs())
}

/// The client side sends; the server receives, then acknowledges the byte count. Returns the
/// rows, MB/s, and CPU seconds per GiB of both processes together.
pub async fn quic(size: u64) -> Result<(Vec<Row>, f64, f64)> {
    let server = Server::spawn("__quic-server").await?;
    let (secs, client_cpu, lost_sent) = quic_send(server.addr, size).await?;
    let (got, server_secs, server_cpu) = server.finish().await?;
    ensure!(got == size, "server got {got} of {size} bytes");
    let mbps = mb_per_s(size, secs);
    let gib = size as f64 / crate::GIB as f64;
    let cpu_per_gib = (client_cpu + server_cpu) / gib;
    Ok((
        vec![
            Row::new(
                format!("quinn 1 stream proc->proc, {}", size_label(size)),
                mbps,
                "MB/s",
                format!(
                    "Ferry's endpoint+TLS; receiver's own view {:.0} MB/s; {lost_sent} packets lost",
                    mb_per_s(size, server_secs)
                ),
            ),
            Row::new(
                "quinn CPU per GiB, both processes",
                cpu_per_gib,
                "s/GiB",
                format!(
                    "sender {:.1}s + receiver {:.1}s per GiB",
                    client_cpu / gib,
                    server_cpu / gib
                ),
            ),
        ],
        mbps,
        cpu_per_gib,
    ))
}

/// Sends `size` bytes to a `__quic-server` at `to` over one stream, exactly as Ferry sets up
/// its connections (socket with 4 MiB buffers, raw-key TLS, transport config). Returns
/// (seconds until the server acknowledged the count, this process's CPU seconds, lost packets).
pub async fn quic_send(to: SocketAddr, size: u64) -> Result<(f64, f64, u64)> {
    let identity = Identity::generate()?;
    let limits = TransportLimits::default();
    let local = SocketAddr::new(
        if to.ip().is_loopback() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        },
        0,
    );
    let ep = endpoint::bind(local, &identity, &limits, 4)?;
    let (crypto, _found) = tls::client_crypto(&identity, None)?;
    let mut cfg = quinn::ClientConfig::new(crypto);
    cfg.transport_config(endpoint::transport_config(&limits)?);
    let conn = ep.connect_with(cfg, to, tls::SERVER_NAME)?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let chunk = Bytes::from(data::random_vec(CHUNK, 5));
    let cpu_before = own_cpu_secs();
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        // A clone is a reference count: quinn still copies and encrypts every byte, as for
        // fresh data.
        send.write_chunk(chunk.slice(..n)).await?;
        left -= n as u64;
    }
    send.finish()?;
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = own_cpu_secs() - cpu_before;
    let lost = conn.stats().path.lost_packets;
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    ensure!(
        u64::from_le_bytes(ack) == size,
        "the server counted {} of {size} bytes",
        u64::from_le_bytes(ack)
    );
    Ok((secs, cpu, lost))
}

pub async fn quic_server(listen: SocketAddr) -> Result<()> {
    let identity = Identity::generate()?;
    let ep = endpoint::bind(listen, &identity, &TransportLimits::default(), 4)?;
    println!("port {}", ep.local_addr()?.port());
    let conn = ep.accept().await.context("endpoint closed")?.await?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut got = 0u64;
    let mut first = None;
    while let Some(c) = recv.read_chunk(usize::MAX, true).await? {
        first.get_or_insert_with(Instant::now);
        got += c.bytes.len() as u64;
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    send.write_all(&got.to_le_bytes()).await?;
    send.finish()?;
    // The client closes once it has the count; waiting for that makes sure it arrived.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    report(got, secs, conn.stats().path.lost_packets);
    Ok(())
}

pub async fn tcp(size: u64) -> Result<Vec<Row>> {
    let server = Server::spawn("__tcp-server").await?;
    let mut s = tokio::net::TcpStream::connect(server.addr).await?;
    let chunk = data::random_vec(CHUNK, 6);
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    let (got, server_secs, _) = server.finish().await?;
    ensure!(got == size, "server got {got} of {size} bytes");
    Ok(vec![Row::new(
        format!("tcp proc->proc, {}", size_label(size)),
        mb_per_s(size, secs),
        "MB/s",
        format!(
            "tokio, 1 MiB writes, no TLS; receiver's view {:.0} MB/s",
            mb_per_s(size, server_secs)
        ),
    )])
}

pub async fn tcp_server() -> Result<()> {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await?;
    println!("port {}", listener.local_addr()?.port());
    let (mut s, _) = listener.accept().await?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut first = None;
    loop {
        match s.read(&mut buf).await? {
            0 => break,
            n => {
                first.get_or_insert_with(Instant::now);
                got += n as u64;
            }
        }
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    s.write_all(&got.to_le_bytes()).await?;
    s.shutdown().await?;
    report(got, secs, 0);
    Ok(())
}
