//! The receiving side of a data stream: records are checked against the plan, file data goes
//! to temporary files on a blocking thread, and each file is hashed and compared with the
//! sender's hash. A verified file is made durable and moved into place (see [`crate::place`])
//! before it is reported; small files are synced in batches, then placed together.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

use crate::names::Os;
use crate::place;
use crate::record::{self, Head, RecordError};

/// Files at least this big are fsynced on their own; smaller ones are synced in batches
/// (per-file fsync measured 3,400 files/s here; one sync per batch, 60,000 files/s).
pub const SYNC_ALONE: u64 = 1 << 20;
/// A batch of small files is synced and placed at this many files, or [`BATCH_WAIT`] after its
/// first, whichever comes first. Each sync flushes the whole filesystem (`syncfs`), so fewer
/// cannot cost more; on this VM's shared disk 512 and 4,096 measured alike within its noise
/// (medians 4,558 and 4,780 files/s for 10,000 × 4 KiB, start to exit).
const BATCH_FILES: usize = 4096;
const BATCH_WAIT: Duration = Duration::from_millis(200);

/// What the receiver expects for one file.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Where the data goes until it is verified.
    pub temp: PathBuf,
    /// Where it goes then (a free name next to it if this one is taken by then).
    pub dest: PathBuf,
    /// Where the sender starts (bytes already in `temp` before it are kept and re-hashed).
    pub offset: u64,
    pub size: u64,
}

/// Called on the writer thread with entry ids and their destinations right before verified,
/// durable files are moved into place: the caller records them first, so that after a crash
/// between the two steps a resume finds each file recorded and places the leftover temp file
/// itself instead of receiving it again. A batch of small files comes in one call (one
/// transaction for the caller, not one per file). An error stops the stream as a disk error.
pub type Journal =
    std::sync::Arc<dyn Fn(&[(u32, &std::path::Path)]) -> std::io::Result<()> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// The whole file matches the sender's BLAKE3 hash, is durable, and is at `path`.
    Verified {
        id: u32,
        hash: [u8; 32],
        path: PathBuf,
        /// `path` is the destination the journal recorded (not a free name found later).
        journaled: bool,
    },
    /// Not placed; the temp file was removed.
    Failed { id: u32, reason: FileFailure },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileFailure {
    #[error("content does not match the sender's hash")]
    HashMismatch,
    #[error("the sender gave up on it: {0}")]
    SenderAborted(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Writing to the destination failed (full, read-only, gone): the stream stops; what
    /// becomes of the temp files is the caller's decision.
    #[error("cannot write {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Stopped from this side; everything received so far is written and reported.
    #[error("stopped")]
    Stopped,
}

/// Data buffers going back from the writer to the reader: fresh 1 MiB allocations cost a page
/// fault per 4 KiB (a tenth of the receiver's CPU on a fast link, measured).
#[derive(Clone, Default)]
struct Pool(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// Buffers kept: the channel's depth and one at each end.
    const KEEP: usize = 10;

    fn take(&self, len: usize) -> Vec<u8> {
        let mut b = self
            .0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        b.clear();
        b.reserve(len);
        b
    }

    fn give(&self, b: Vec<u8>) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() < Self::KEEP && b.capacity() <= record::MAX_DATA {
                v.push(b);
            }
        }
    }
}

enum Cmd {
    Open { id: u32, exp: Expect },
    Write(Vec<u8>),
    Finish { hash: [u8; 32] },
    Abort { reason: String },
}

/// Reads one data stream to its end. `plan` names every file that may appear (files absent
/// from it are skipped by the sender); each file may appear once. Verified and failed files
/// are reported on `outcomes` as they complete; `received` counts payload bytes.
pub async fn receive_files<R: AsyncRead + Unpin>(
    r: &mut R,
    plan: &HashMap<u32, Expect>,
    os: Os,
    journal: Journal,
    outcomes: mpsc::Sender<FileOutcome>,
    received: &AtomicU64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RecvError> {
    let (tx, rx) = mpsc::channel::<Cmd>(8);
    let (err_tx, mut err_rx) = mpsc::channel::<RecvError>(1);
    let pool = Pool::default();
    let writer = std::thread::Builder::new()
        .name("ferry-recv-write".into())
        .spawn({
            let handle = tokio::runtime::Handle::current();
            let pool = pool.clone();
            move || write_loop(rx, handle, os, journal, outcomes, err_tx, pool)
        })
        .map_err(|source| RecvError::Disk {
            path: PathBuf::new(),
            source,
        })?;
    let result = tokio::select! {
        r = read_loop(r, plan, &tx, received, &mut err_rx, &pool) => r,
                // A dropped sender means nobody can stop us: wait forever on that branch.
        _ = async { if stop.wait_for(|s| *s).await.is_err() { std::future::pending::<()>().await } } => Err(RecvError::Stopped),
    };
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    // A disk error reported after the last record still fails the stream.
    match (result, err_rx.try_recv()) {
        (Ok(()), Ok(e)) => Err(e),
        (r, _) => r,
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    r: &mut R,
    plan: &HashMap<u32, Expect>,
    tx: &mpsc::Sender<Cmd>,
    received: &AtomicU64,
    err_rx: &mut mpsc::Receiver<RecvError>,
    pool: &Pool,
) -> Result<(), RecvError> {
    let mut seen = HashSet::new();
    // (id, bytes still to come) of the file being received.
    let mut current: Option<(u32, u64)> = None;
    loop {
        if let Ok(e) = err_rx.try_recv() {
            return Err(e);
        }
        let head = record::read_head(r).await?;
        let cmd = match head {
            None if current.is_some() => return Err(RecordError::Truncated.into()),
            // A clean end: every planned file must have come (a sender may not drop some).
            None if seen.len() < plan.len() => {
                return Err(RecvError::Protocol(format!(
                    "the stream ended with {} planned files missing",
                    plan.len() - seen.len()
                )))
            }
            None => return Ok(()),
            Some(Head::FileStart { id, offset }) => {
                if current.is_some() {
                    return Err(RecvError::Protocol("file started inside another".into()));
                }
                let exp = plan
                    .get(&id)
                    .ok_or_else(|| RecvError::Protocol(format!("file {id} is not in the plan")))?;
                if !seen.insert(id) {
                    return Err(RecvError::Protocol(format!("file {id} sent twice")));
                }
                if offset != exp.offset {
                    return Err(RecvError::Protocol(format!(
                        "file {id} starts at {offset}, expected {}",
                        exp.offset
                    )));
                }
                current = Some((id, exp.size - exp.offset));
                Cmd::Open {
                    id,
                    exp: exp.clone(),
                }
            }
            Some(Head::Data { len }) => {
                let Some((id, left)) = current.as_mut() else {
                    return Err(RecvError::Protocol("data outside a file".into()));
                };
                if len as u64 > *left {
                    return Err(RecvError::Protocol(format!(
                        "file {id}: more bytes than its declared size"
                    )));
                }
                *left -= len as u64;
                // Read into spare capacity: no zero-filling of a buffer about to be overwritten.
                let mut buf = pool.take(len);
                let got = (&mut *r)
                    .take(len as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| RecvError::Record(RecordError::Io(e)))?;
                if got < len {
                    return Err(RecvError::Record(RecordError::Truncated));
                }
                received.fetch_add(len as u64, Ordering::Relaxed);
                Cmd::Write(buf)
            }
            Some(Head::FileEnd { hash }) => match current.take() {
                Some((_, 0)) => Cmd::Finish { hash },
                Some((id, left)) => {
                    return Err(RecvError::Protocol(format!(
                        "file {id} ended {left} bytes short of its declared size"
                    )))
                }
                None => return Err(RecvError::Protocol("file end outside a file".into())),
            },
            Some(Head::FileAbort { reason }) => match current.take() {
                Some(_) => Cmd::Abort { reason },
                None => return Err(RecvError::Protocol("abort outside a file".into())),
            },
        };
        // Awaiting (not blocking) here is the back-pressure when the disk is slower than the
        // network, and it leaves this runtime thread free for QUIC meanwhile.
        if tx.send(cmd).await.is_err() {
            // The writer stopped: it has sent (or is sending) the reason.
            return Err(err_rx
                .recv()
                .await
                .unwrap_or(RecvError::Protocol("writer stopped".into())));
        }
    }
}

struct Open {
    id: u32,
    file: File,
    exp: Expect,
    hasher: blake3::Hasher,
    /// Bytes written since writeback was last started.
    unsynced: u64,
}

/// Big files start their writeback every this many bytes, so the fsync at the end has little
/// left to do (it was ~0.5 s per GiB, inside the transfer time).
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Asks the kernel to start writing dirty pages of `file` out now, without waiting for it.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range on a descriptor we own; offset 0 and length 0 mean "the
        // whole file", and SYNC_FILE_RANGE_WRITE only initiates writeback.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Verified small files waiting for one sync, then placement.
#[derive(Default)]
struct Batch {
    files: Vec<(u32, [u8; 32], Expect)>,
    since: Option<Instant>,
}

fn write_loop(
    mut rx: mpsc::Receiver<Cmd>,
    handle: tokio::runtime::Handle,
    os: Os,
    journal: Journal,
    outcomes: mpsc::Sender<FileOutcome>,
    err: mpsc::Sender<RecvError>,
    pool: Pool,
) {
    let mut open: Option<Open> = None;
    let mut batch = Batch::default();
    let fail = |path: &PathBuf, source| {
        let _ = err.blocking_send(RecvError::Disk {
            path: path.clone(),
            source,
        });
    };
    loop {
        // With a batch of small files pending, wake up in time to flush it even if the stream
        // goes quiet. (The runtime handle gives this plain thread a receive with a timeout.)
        let cmd = match batch.since {
            Some(t) => match handle.block_on(async {
                tokio::time::timeout(BATCH_WAIT.saturating_sub(t.elapsed()), rx.recv()).await
            }) {
                Ok(Some(c)) => Some(c),
                Ok(None) => break,
                Err(_) => None,
            },
            None => match rx.blocking_recv() {
                Some(c) => Some(c),
                None => break,
            },
        };
        let flush_due = batch.files.len() >= BATCH_FILES
            || batch.since.is_some_and(|t| t.elapsed() >= BATCH_WAIT);
        if cmd.is_none() || flush_due {
            if let Err((path, e)) = flush(&mut batch, os, &journal, &outcomes) {
                return fail(&path, e);
            }
        }
        let Some(cmd) = cmd else { continue };
        match cmd {
            Cmd::Open { id, exp } => match open_temp(&exp) {
                Ok((file, hasher)) => {
                    open = Some(Open {
                        id,
                        file,
                        exp,
                        hasher,
                        unsynced: 0,
                    })
                }
                Err(e) => return fail(&exp.temp, e),
            },
            Cmd::Write(buf) => {
                let Some(o) = open.as_mut() else { continue };
                if let Err(e) = o.file.write_all(&buf) {
                    return fail(&o.exp.temp, e);
                }
                o.hasher.update(&buf);
                o.unsynced += buf.len() as u64;
                pool.give(buf);
                if o.unsynced >= WRITEBACK_EVERY {
                    start_writeback(&o.file);
                    o.unsynced = 0;
                }
            }
            Cmd::Finish { hash } => {
                let Some(o) = open.take() else { continue };
                if *o.hasher.finalize().as_bytes() != hash {
                    let _ = std::fs::remove_file(&o.exp.temp);
                    if outcomes
                        .blocking_send(FileOutcome::Failed {
                            id: o.id,
                            reason: FileFailure::HashMismatch,
                        })
                        .is_err()
                    {
                        return;
                    }
                } else if o.exp.size >= SYNC_ALONE {
                    let placed = o
                        .file
                        .sync_all()
                        .and_then(|()| journal(&[(o.id, &o.exp.dest)]))
                        .and_then(|()| place::place(&o.exp.temp, &o.exp.dest, os));
                    match placed {
                        Ok(path) => {
                            if outcomes
                                .blocking_send(FileOutcome::Verified {
                                    id: o.id,
                                    hash,
                                    journaled: path == o.exp.dest,
                                    path,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => return fail(&o.exp.temp, e),
                    }
                } else {
                    batch.since.get_or_insert_with(Instant::now);
                    batch.files.push((o.id, hash, o.exp));
                }
            }
            Cmd::Abort { reason } => {
                let Some(o) = open.take() else { continue };
                let _ = std::fs::remove_file(&o.exp.temp);
                let failed = FileOutcome::Failed {
                    id: o.id,
                    reason: FileFailure::SenderAborted(reason),
                };
                if outcomes.blocking_send(failed).is_err() {
                    return;
                }
            }
        }
    }
    if let Err((path, e)) = flush(&mut batch, os, &journal, &outcomes) {
        fail(&path, e);
    }
}

/// Syncs the batch once, then places and reports each file.
fn flush(
    batch: &mut Batch,
    os: Os,
    journal: &Journal,
    outcomes: &mpsc::Sender<FileOutcome>,
) -> Result<(), (PathBuf, std::io::Error)> {
    let files = std::mem::take(&mut batch.files);
    batch.since = None;
    let Some((_, _, first)) = files.first() else {
        return Ok(());
    };
    let dir = first.temp.parent().map(PathBuf::from).unwrap_or_default();
    let temps: Vec<PathBuf> = files.iter().map(|(_, _, e)| e.temp.clone()).collect();
    place::sync_batch(&dir, &temps).map_err(|e| (dir.clone(), e))?;
    let entries: Vec<(u32, &std::path::Path)> = files
        .iter()
        .map(|(id, _, e)| (*id, e.dest.as_path()))
        .collect();
    journal(&entries).map_err(|e| (dir.clone(), e))?;
    for (id, hash, exp) in files {
        let path = place::place(&exp.temp, &exp.dest, os).map_err(|e| (exp.dest.clone(), e))?;
        let journaled = path == exp.dest;
        if outcomes
            .blocking_send(FileOutcome::Verified {
                id,
                hash,
                path,
                journaled,
            })
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// Opens the temp file for writing at `offset`, hashing the bytes already there.
fn open_temp(exp: &Expect) -> std::io::Result<(File, blake3::Hasher)> {
    let mut hasher = blake3::Hasher::new();
    if exp.offset == 0 {
        // A fresh file, never something already there (a stale temp, or a planted link): made
        // new, and only when that fails removed first (one syscall per file in the common case).
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&exp.temp)
        };
        let file = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&exp.temp)?;
                create()?
            }
            r => r?,
        };
        return Ok((file, hasher));
    }
    let mut file = OpenOptions::new().read(true).write(true).open(&exp.temp)?;
    if file.metadata()?.len() < exp.offset {
        return Err(std::io::Error::other(
            "partial file is shorter than the resume offset",
        ));
    }
    // Drop anything past the offset (a write that never made it into the plan).
    file.set_len(exp.offset)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = exp.offset;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(exp.offset))?;
    Ok((file, hasher))
}
