//! The sending side of a data stream: files are read and hashed on a blocking thread and
//! written as records, back to back, with no per-block acknowledgement.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use std::future::Future;

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

/// Where a data stream goes. Anything [`AsyncWrite`] is one, copying what it is given; a QUIC
/// stream wrapped by its caller takes the file's buffers as they are (quinn's `write_chunk`):
/// one copy of every byte less on the sender.
pub trait Sink: Send {
    fn put<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a;
    /// Takes `buf` whole; by default a copy like [`Sink::put`].
    fn put_owned(&mut self, buf: Vec<u8>) -> impl Future<Output = std::io::Result<()>> + Send;
    fn flush_all(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl<W: AsyncWrite + Unpin + Send> Sink for W {
    fn put<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a {
        AsyncWriteExt::write_all(self, buf)
    }

    async fn put_owned(&mut self, buf: Vec<u8>) -> std::io::Result<()> {
        AsyncWriteExt::write_all(self, &buf).await
    }

    fn flush_all(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        AsyncWriteExt::flush(self)
    }
}

/// Records (data chunks of up to 1 MiB) read ahead of the network: bounded, so memory stays
/// flat whatever the file size.
const READ_AHEAD: usize = 8;

/// Records are gathered up to this size before they go to the stream: many small files in one
/// write instead of four writes each. Data bigger than [`DIRECT`] is written as it is.
const OUT_BUF: usize = 256 << 10;
const DIRECT: usize = 64 << 10;

enum Msg {
    Start {
        id: u32,
        offset: u64,
    },
    Data(Vec<u8>),
    End([u8; 32]),
    Abort {
        id: u32,
        reason: String,
    },
    /// A file read whole (the rest of it from `offset`, at most one Data record): Start, Data
    /// and End in one message, so a small file costs the reader thread one hand-over.
    Whole {
        id: u32,
        offset: u64,
        data: Vec<u8>,
        hash: [u8; 32],
    },
}

/// Streams `jobs` to `w` in order. Waits while `paused` is true. Returns the files the sender
/// had to give up on (changed while sending, unreadable), which the receiver also learns.
pub async fn send_files<W: Sink>(
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
    let mut out = Vec::with_capacity(OUT_BUF);
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            // Nothing else ready: what is gathered goes out before we wait.
            Err(mpsc::error::TryRecvError::Empty) => {
                drain(w, &mut out).await?;
                match rx.recv().await {
                    Some(m) => m,
                    None => break,
                }
            }
        };
        if *paused.borrow() {
            drain(w, &mut out).await?;
            while *paused.borrow_and_update() {
                if paused.changed().await.is_err() {
                    break;
                }
            }
        }
        match msg {
            Msg::Start { id, offset } => out.extend_from_slice(&record::file_start(id, offset)),
            Msg::Data(buf) => data(w, &mut out, buf, sent).await?,
            Msg::End(hash) => out.extend_from_slice(&record::file_end(&hash)),
            Msg::Whole {
                id,
                offset,
                data: buf,
                hash,
            } => {
                out.extend_from_slice(&record::file_start(id, offset));
                if !buf.is_empty() {
                    data(w, &mut out, buf, sent).await?;
                }
                out.extend_from_slice(&record::file_end(&hash));
            }
            Msg::Abort { id, reason } => {
                tracing::warn!(id, %reason, "file not sent");
                out.extend_from_slice(&record::file_abort(&reason));
                aborted.push((id, reason));
            }
        }
        if out.len() >= OUT_BUF {
            drain(w, &mut out).await?;
        }
    }
    let _ = reader.join();
    drain(w, &mut out).await?;
    w.flush_all().await.map_err(SendError::Write)?;
    Ok(aborted)
}

/// Writes what is gathered in `out`.
async fn drain<W: Sink>(w: &mut W, out: &mut Vec<u8>) -> Result<(), SendError> {
    if !out.is_empty() {
        w.put(out).await.map_err(SendError::Write)?;
        out.clear();
    }
    Ok(())
}

/// A Data record: gathered when small, written at once (after what is gathered) when not.
async fn data<W: Sink>(
    w: &mut W,
    out: &mut Vec<u8>,
    buf: Vec<u8>,
    sent: &AtomicU64,
) -> Result<(), SendError> {
    let len = buf.len();
    out.extend_from_slice(&record::data_head(len));
    if len < DIRECT {
        out.extend_from_slice(&buf);
    } else {
        drain(w, out).await?;
        w.put_owned(buf).await.map_err(SendError::Write)?;
    }
    sent.fetch_add(len as u64, Ordering::Relaxed);
    Ok(())
}

/// Whether the open file still has the size and mtime it was offered with.
fn unchanged(f: &File, job: &FileJob) -> bool {
    f.metadata()
        .map(|m| m.len() == job.size && mtime_of(&m) == job.mtime)
        .unwrap_or(false)
}

fn mtime_of(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads one file into messages. Returns false when the network side is gone.
fn read_one(job: &FileJob, tx: &mpsc::Sender<Msg>) -> bool {
    // A failure before anything was sent: Start first, so the receiver knows which file the
    // abort is about.
    let start_and_abort = |reason: String| {
        tx.blocking_send(Msg::Start {
            id: job.id,
            offset: job.offset,
        })
        .is_ok()
            && tx.blocking_send(Msg::Abort { id: job.id, reason }).is_ok()
    };
    let left = job.size - job.offset.min(job.size);
    if left <= MAX_DATA as u64 {
        return match read_whole(job, left) {
            Ok((data, hash)) => tx
                .blocking_send(Msg::Whole {
                    id: job.id,
                    offset: job.offset,
                    data,
                    hash,
                })
                .is_ok(),
            Err(reason) => start_and_abort(reason),
        };
    }
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
    if !unchanged(&f, job) {
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
    if grew || !unchanged(&f, job) {
        return abort("the file changed while sending".into());
    }
    tx.blocking_send(Msg::End(*hasher.finalize().as_bytes()))
        .is_ok()
}

/// Reads a file whose rest (`left` bytes from the job's offset) fits one Data record, with the
/// same checks as a big one: it must match the offer before and after, and not grow.
fn read_whole(job: &FileJob, left: u64) -> Result<(Vec<u8>, [u8; 32]), String> {
    let mut f = File::open(&job.source).map_err(|e| format!("cannot read: {e}"))?;
    if !unchanged(&f, job) {
        return Err("the file changed after it was offered".into());
    }
    let mut hasher = blake3::Hasher::new();
    if job.offset > job.size {
        return Err("the file shrank while sending".into());
    }
    if job.offset > 0 {
        let mut prefix = vec![0u8; job.offset as usize];
        match fill(&mut f, &mut prefix) {
            Ok(got) if got == prefix.len() => hasher.update(&prefix),
            Ok(_) => return Err("the file shrank while sending".into()),
            Err(e) => return Err(format!("read error: {e}")),
        };
    }
    // One byte more than expected: reading it means the file grew.
    let mut data = Vec::with_capacity(left as usize + 1);
    match (&mut f).take(left + 1).read_to_end(&mut data) {
        Ok(got) if got as u64 == left => {}
        Ok(got) if (got as u64) < left => return Err("the file shrank while sending".into()),
        Ok(_) => return Err("the file changed while sending".into()),
        Err(e) => return Err(format!("read error: {e}")),
    }
    if !unchanged(&f, job) {
        return Err("the file changed while sending".into());
    }
    hasher.update(&data);
    Ok((data, *hasher.finalize().as_bytes()))
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
