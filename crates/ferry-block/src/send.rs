//! The sending side of a data stream: files are read and hashed on a blocking thread and
//! written as records, back to back, with no per-block acknowledgement.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::record::{self, MAX_DATA};

/// One file to send from `offset` (the receiver's answer), hashing all of it.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub id: u32,
    pub source: PathBuf,
    pub offset: u64,
    /// Size and mtime as offered in the manifest: a file that no longer matches is not sent.
    pub size: u64,
    pub mtime: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("writing to the peer: {0}")]
    Write(std::io::Error),
}

/// Records (data chunks of up to 1 MiB) read ahead of the network: bounded, so memory stays
/// flat whatever the file size.
const READ_AHEAD: usize = 8;

enum Msg {
    Start { id: u32, offset: u64 },
    Data(Vec<u8>),
    End([u8; 32]),
    Abort { id: u32, reason: String },
}

/// Streams `jobs` to `w` in order. Waits while `paused` is true. Returns the files the sender
/// had to give up on (changed while sending, unreadable), which the receiver also learns.
pub async fn send_files<W: AsyncWrite + Unpin>(
    w: &mut W,
    jobs: Vec<FileJob>,
    mut paused: watch::Receiver<bool>,
    sent: &AtomicU64,
) -> Result<Vec<(u32, String)>, SendError> {
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let reader = std::thread::Builder::new()
        .name("ferry-send-read".into())
        .spawn(move || {
            for job in jobs {
                if !read_one(&job, &tx) {
                    return;
                }
            }
        })
        .map_err(SendError::Write)?;
    let mut aborted = vec![];
    while let Some(msg) = rx.recv().await {
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                break;
            }
        }
        let r = match msg {
            Msg::Start { id, offset } => w.write_all(&record::file_start(id, offset)).await,
            Msg::Data(buf) => {
                let r = async {
                    w.write_all(&record::data_head(buf.len())).await?;
                    w.write_all(&buf).await
                }
                .await;
                sent.fetch_add(buf.len() as u64, Ordering::Relaxed);
                r
            }
            Msg::End(hash) => w.write_all(&record::file_end(&hash)).await,
            Msg::Abort { id, reason } => {
                tracing::warn!(id, %reason, "file not sent");
                let r = w.write_all(&record::file_abort(&reason)).await;
                aborted.push((id, reason));
                r
            }
        };
        r.map_err(SendError::Write)?;
    }
    let _ = reader.join();
    w.flush().await.map_err(SendError::Write)?;
    Ok(aborted)
}

fn mtime_of(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads one file into messages. Returns false when the network side is gone.
fn read_one(job: &FileJob, tx: &mpsc::Sender<Msg>) -> bool {
    let abort = |reason: String| tx.blocking_send(Msg::Abort { id: job.id, reason }).is_ok();
    let mut f = match File::open(&job.source) {
        Ok(f) => f,
        Err(e) => {
            // Start first, so the receiver knows which file the abort is about.
            return tx
                .blocking_send(Msg::Start {
                    id: job.id,
                    offset: job.offset,
                })
                .is_ok()
                && abort(format!("cannot read: {e}"));
        }
    };
    if tx
        .blocking_send(Msg::Start {
            id: job.id,
            offset: job.offset,
        })
        .is_err()
    {
        return false;
    }
    let unchanged = |f: &File| {
        f.metadata()
            .map(|m| m.len() == job.size && mtime_of(&m) == job.mtime)
            .unwrap_or(false)
    };
    if !unchanged(&f) {
        return abort("the file changed after it was offered".into());
    }
    let mut hasher = blake3::Hasher::new();
    // Resuming: the whole-file hash still covers the bytes the receiver already has.
    let mut prefix = job.offset;
    let mut buf = vec![0u8; MAX_DATA];
    while prefix > 0 {
        let n = prefix.min(MAX_DATA as u64) as usize;
        match fill(&mut f, &mut buf[..n]) {
            Ok(got) if got == n => {
                hasher.update(&buf[..n]);
                prefix -= n as u64;
            }
            Ok(_) => return abort("the file shrank while sending".into()),
            Err(e) => return abort(format!("read error: {e}")),
        }
    }
    let mut left = job.size - job.offset.min(job.size);
    while left > 0 {
        let n = left.min(MAX_DATA as u64) as usize;
        // Read into spare capacity: no zero-filling of a buffer about to be overwritten.
        let mut chunk = Vec::with_capacity(n);
        match (&mut f).take(n as u64).read_to_end(&mut chunk) {
            Ok(got) if got == n => {}
            Ok(_) => return abort("the file shrank while sending".into()),
            Err(e) => return abort(format!("read error: {e}")),
        }
        hasher.update(&chunk);
        left -= n as u64;
        if tx.blocking_send(Msg::Data(chunk)).is_err() {
            return false;
        }
    }
    let grew = f.read(&mut [0u8; 1]).map(|n| n > 0).unwrap_or(true);
    if grew || !unchanged(&f) {
        return abort("the file changed while sending".into());
    }
    tx.blocking_send(Msg::End(*hasher.finalize().as_bytes()))
        .is_ok()
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn fill(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
