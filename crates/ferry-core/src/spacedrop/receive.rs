//! A reception, once its offer is accepted (see `offer`): answer with where each file starts,
//! then follow the data stream's outcomes, the sender's messages and the user's commands, and
//! report progress and every file's outcome until the transfer ends one way or another.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_block::recv::{FileOutcome, Journal, RecvError};
use ferry_p2p::router::Incoming;
use ferry_p2p::wire::write_frame;
use ferry_p2p::{Code, StreamError};
use ferry_util::lock;
use tokio::sync::{mpsc, oneshot, watch};

use super::commands::{control_for, Cancel, Cmd};
use super::decide::{self, apply_pause, FromSender};
use super::disk::{record_file, remove_temps};
use super::state::{DataJob, SpacedropState};
use super::store::{FileStatus, TransferRow};
use super::types::{FailedFile, Side, TransferInfo, TransferState};
use super::wire::{Answer, Control, FrameReader, Starts, MAX_ANSWER, MAX_CONTROL, MAX_REASON};

/// How long the sender has to open the data stream after the answer.
const DATA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one message to the sender may wait for room in its stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a run that ends waits for its data handler to stop writing.
const WRITER_WAIT: Duration = Duration::from_secs(30);

/// Writes to the sender, giving up after [`WRITE_TIMEOUT`]. A sender that stops reading its
/// control stream fills QUIC's flow-control window for it (1.25 MB: about 2,200 FileFailed with
/// long reasons), and a write without a bound then held the transfer's loop for good: nothing
/// more was received or reported, and the user's cancel was never read.
pub(super) async fn tell<T: serde::Serialize>(
    s: &mut Incoming,
    msg: &T,
    max: usize,
) -> Result<(), StreamError> {
    tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut s.send, msg, max))
        .await
        .unwrap_or(Err(StreamError::Timeout("the sender to read")))
}

/// [`tell`] for a live transfer: given up at once if the user cancels (the loop then ends the
/// transfer as cancelled), however long the sender has left it without room.
async fn tell_live<T: serde::Serialize>(
    s: &mut Incoming,
    cancel: &Cancel,
    msg: &T,
    max: usize,
) -> Result<(), StreamError> {
    cancel
        .or(tell(s, msg, max))
        .await
        .unwrap_or(Err(StreamError::Local(Code::Cancelled, "cancelled here")))
}

/// Remembers a write that timed out (the sender does not read); other write errors show up on
/// the reading side.
fn note_unread(r: Result<(), StreamError>, unread: &mut Option<StreamError>) {
    if let Err(e @ StreamError::Timeout(_)) = r {
        *unread = Some(e);
    }
}

/// Answers with `starts` and receives until the transfer ends one way or another.
pub(super) async fn run(
    shared: Arc<SpacedropState>,
    s: &mut Incoming,
    row: TransferRow,
    starts: Starts,
) -> Result<(), StreamError> {
    let id = row.id;
    let dest = row.dest.clone().unwrap_or_default();
    let expected = decide::expected(&row.manifest, &row.layout.paths, &dest, &id, &starts);
    let (resumed, already) = (expected.resumed, expected.already);
    let mut cmds = shared.register(reception(&row, &dest, &expected));
    let _ = shared.store.set_state(&id, "transferring", None);
    let (job, mut handler) = data_job(&shared, &row, expected);
    lock(&shared.data_jobs).insert((s.peer, id), job);
    let cancel = cmds.cancel.clone();
    let answered = tell_live(s, &cancel, &Answer::Accepted { starts }, MAX_ANSWER).await;
    // (Cancelled meanwhile: the loop below ends it as such.)
    if let (Err(e), false) = (answered, cancel.is_set()) {
        lock(&shared.data_jobs).remove(&(s.peer, id));
        shared.finish(
            &id,
            TransferState::Interrupted {
                reason: format!("connection lost: {e}"),
            },
        );
        return Ok(());
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let data_deadline = tokio::time::sleep(DATA_TIMEOUT);
    tokio::pin!(data_deadline);
    let mut data_started = false;
    let mut files_done = already;
    let mut control_open = true;
    let mut stopping: Option<String> = None;
    // Read in a `select!`: needs a reader that keeps a half-read frame (see FrameReader).
    let mut control = FrameReader::new(MAX_CONTROL);
    let mut unread: Option<StreamError> = None;
    let end: TransferState = loop {
        // First: a cancel that cut a write short must not read as that write's failure.
        if cancel.is_set() {
            break cancel_here(s, &handler.cancel, &row);
        }
        if unread.is_some() {
            let _ = handler.cancel.send(true);
            remove_temps(&row);
            break TransferState::Failed {
                reason: format!(
                    "the sender stopped reading ({} s without room for a message)",
                    WRITE_TIMEOUT.as_secs()
                ),
            };
        }
        tokio::select! {
            o = handler.outcomes.recv() => match o {
                Some(o) => {
                    data_started = true;
                    note_unread(record_outcome(&shared, &row, s, &cancel, o, &mut files_done).await, &mut unread);
                }
                // The data handler is done and every outcome is in.
                None if stopping.is_some() => {
                    break TransferState::Interrupted { reason: stopping.take().unwrap_or_default() };
                }
                None => {
                    let r = handler.result().await;
                    let bytes = resumed + handler.received.load(Ordering::Relaxed);
                    // Its last words wait for the sender to read them: a cancel does not.
                    match cancel.or(settle(&shared, s, &row, r, bytes, files_done)).await {
                        Some(end) => break end,
                        None => break cancel_here(s, &handler.cancel, &row),
                    }
                }
            },
            r = &mut handler.done, if !handler.ended => {
                handler.ended = true;
                handler.result = Some(r.unwrap_or(Err(RecvError::Protocol("data stream vanished".into()))));
            }
            _ = tick.tick() => {
                let bytes = resumed + handler.received.load(Ordering::Relaxed);
                if bytes > resumed {
                    data_started = true;
                }
                let progress = Control::Progress { bytes, files: files_done as u32 };
                note_unread(tell_live(s, &cancel, &progress, MAX_CONTROL).await, &mut unread);
                shared.update(&id, |i| {
                    i.bytes_done = bytes;
                    i.files_done = files_done;
                });
            }
            // The job is still registered until the sender's data stream claims it.
            _ = &mut data_deadline, if !data_started && lock(&shared.data_jobs).contains_key(&(s.peer, id)) => {
                lock(&shared.data_jobs).remove(&(s.peer, id));
                break TransferState::Interrupted { reason: "the sender did not start sending".into() };
            }
            msg = control.next::<_, Control>(&mut s.recv), if control_open => match decide::from_sender(msg) {
                FromSender::Pause(pause) => shared.update_from_peer(&id, |i| apply_pause(i, pause, Side::Peer)),
                FromSender::Closed => control_open = false,
                FromSender::End(end) => {
                    let _ = handler.cancel.send(true);
                    if decide::removes_partials(&end) {
                        remove_temps(&row);
                    }
                    break end;
                }
            },
            cmd = cmds.next(), if stopping.is_none() => match cmd {
                Some(Cmd::Interrupt) => {
                    // Let the writer finish and record what it holds; keep partial files.
                    stopping = Some("this node stopped".into());
                    let _ = handler.cancel.send(true);
                    lock(&shared.data_jobs).remove(&(s.peer, id));
                }
                Some(Cmd::Cancel) | None => break cancel_here(s, &handler.cancel, &row),
                Some(cmd) => {
                    let pause = matches!(cmd, Cmd::Pause);
                    if let Some(c) = control_for(&cmd) {
                        note_unread(tell_live(s, &cancel, &c, MAX_CONTROL).await, &mut unread);
                    }
                    shared.update(&id, |i| apply_pause(i, pause, Side::Local));
                }
            },
        }
    };
    lock(&shared.data_jobs).remove(&(s.peer, id));
    handler.wind_down(&row, &end).await;
    let cancelled = matches!(end, TransferState::Cancelled { .. });
    shared.finish(&id, end);
    if cancelled {
        return Err(StreamError::Local(Code::Cancelled, "cancelled"));
    }
    if unread.is_some() {
        // A reset also drops what is still queued for a peer that does not read it.
        return Err(StreamError::Local(
            Code::Timeout,
            "the sender stopped reading",
        ));
    }
    Ok(())
}

/// What front ends see of a reception as it starts.
fn reception(row: &TransferRow, dest: &Path, expected: &decide::Expected) -> TransferInfo {
    TransferInfo {
        files_done: expected.already,
        bytes_done: expected.resumed,
        bytes_resumed: expected.resumed,
        dest: Some(dest.display().to_string()),
        ..TransferInfo::starting(row, TransferState::Transferring)
    }
}

/// The run's end of its data stream's handler.
struct Handler {
    outcomes: mpsc::Receiver<FileOutcome>,
    received: Arc<AtomicU64>,
    /// Tells the handler to stop.
    cancel: watch::Sender<bool>,
    done: oneshot::Receiver<Result<(), RecvError>>,
    /// How it ended, once it has.
    result: Option<Result<(), RecvError>>,
    /// It has ended (its writer thread too); `done` must not be polled again.
    ended: bool,
}

/// The job the data stream's handler claims, and the run's end of it. Each verified file is
/// journaled done (with its intended path) before it is placed.
fn data_job(
    shared: &SpacedropState,
    row: &TransferRow,
    expected: decide::Expected,
) -> (DataJob, Handler) {
    let (out_tx, outcomes) = mpsc::channel(256);
    let received = Arc::new(AtomicU64::new(0));
    let (cancel, cancel_rx) = watch::channel(false);
    let (done_tx, done) = oneshot::channel();
    let journal: Journal = {
        let (store, id, manifest) = (shared.store.clone(), row.id, row.manifest.clone());
        Arc::new(move |files| {
            let rows: Vec<_> = files
                .iter()
                .map(|&(entry, dest)| {
                    let size = manifest.entries.get(entry as usize).map_or(0, |e| e.size);
                    let name = manifest.display_path(entry);
                    (entry, size, name, FileStatus::Done(dest.to_path_buf()))
                })
                .collect();
            // One transaction per batch of small files. (A file that lands under another
            // name than this one is recorded again by its outcome.)
            store.set_files(&id, &rows).map_err(std::io::Error::other)
        })
    };
    let job = DataJob {
        plan: expected.plan,
        journal,
        outcomes: out_tx,
        received: received.clone(),
        cancel: cancel_rx,
        done: done_tx,
    };
    let handler = Handler {
        outcomes,
        received,
        cancel,
        done,
        result: None,
        ended: false,
    };
    (job, handler)
}

impl Handler {
    /// How the handler ended (waiting for it if need be), once every outcome is in.
    async fn result(&mut self) -> Result<(), RecvError> {
        let r = match self.result.take() {
            Some(r) => r,
            None => (&mut self.done)
                .await
                .unwrap_or(Err(RecvError::Protocol("data stream vanished".into()))),
        };
        self.ended = true;
        r
    }

    /// Waits for a handler still running to stop. An unclaimed job is gone by now (which ends
    /// `done`); a claimed one is told to stop here. Its writer thread may still write, place or
    /// remove files for a while, and the run must not end before it: a resume of the transfer
    /// waits for the run to end, then sizes the temp files. Racing a writer still busy, a
    /// resume was once planned on a temp file the old writer then placed (the sender had sent
    /// the last byte before it was killed), and it failed with "No such file or directory"
    /// though the file was complete.
    async fn wind_down(self, row: &TransferRow, end: &TransferState) {
        if self.ended {
            return;
        }
        // Nobody reads its outcomes any more: a writer blocked on reporting one stops instead.
        drop(self.outcomes);
        let _ = self.cancel.send(true);
        if tokio::time::timeout(WRITER_WAIT, self.done).await.is_err() {
            tracing::warn!(transfer = %row.id.hex(), "the data handler did not stop in time");
        }
        // What it wrote meanwhile of a transfer that ends for good goes too.
        if decide::removes_partials(end) {
            remove_temps(row);
        }
    }
}

/// Ends the run for the user's cancel: both directions of the control stream reset (which
/// drops what is queued for a sender that does not read, and tells it at once), the data
/// handler told to stop, and the partial files removed.
fn cancel_here(s: &mut Incoming, data: &watch::Sender<bool>, row: &TransferRow) -> TransferState {
    let _ = data.send(true);
    let _ = s.send.reset(Code::Cancelled.var_int());
    let _ = s.recv.stop(Code::Cancelled.var_int());
    remove_temps(row);
    TransferState::Cancelled { by: Side::Local }
}

async fn record_outcome(
    shared: &SpacedropState,
    row: &TransferRow,
    s: &mut Incoming,
    cancel: &Cancel,
    o: FileOutcome,
    files_done: &mut usize,
) -> Result<(), StreamError> {
    match o {
        FileOutcome::Verified {
            id,
            path,
            journaled,
            ..
        } => {
            *files_done += 1;
            if !journaled {
                record_file(shared, row, id, &FileStatus::Done(path));
            }
            let told = tell_live(s, cancel, &Control::FileDone { id }, MAX_CONTROL).await;
            let current = row.manifest.display_path(id);
            shared.update(&row.id, |i| {
                i.files_done = *files_done;
                i.current = Some(current);
            });
            told
        }
        FileOutcome::Failed { id, reason } => {
            let reason = reason.to_string();
            tracing::warn!(transfer = %row.id.hex(), file = %row.manifest.display_path(id), %reason, "file failed");
            record_file(shared, row, id, &FileStatus::Failed(reason.clone()));
            let told = tell_live(
                s,
                cancel,
                &Control::FileFailed {
                    id,
                    reason: reason.clone(),
                },
                MAX_CONTROL,
            )
            .await;
            let path = row.manifest.display_path(id);
            shared.update(&row.id, |i| i.add_failed(FailedFile { path, reason }));
            told
        }
    }
}

/// The data stream ended: tell the sender how it went.
async fn settle(
    shared: &SpacedropState,
    s: &mut Incoming,
    row: &TransferRow,
    r: Result<(), RecvError>,
    bytes: u64,
    files: usize,
) -> TransferState {
    match r {
        Ok(()) => {
            let _ = tell(
                s,
                &Control::Progress {
                    bytes,
                    files: files as u32,
                },
                MAX_CONTROL,
            )
            .await;
            let _ = tell(s, &Control::Finished, MAX_CONTROL).await;
            let _ = s.send.finish();
            // Until the sender has it: a node that exits right after (`receive --once`) would
            // otherwise drop the frame with its connection, and the sender would wait forever.
            let _ = tokio::time::timeout(Duration::from_secs(3), s.send.stopped()).await;
            let failed = lock(&shared.live)
                .get(&row.id)
                .map_or(0, |l| l.info.failed_count);
            shared.update(&row.id, |i| {
                i.bytes_done = bytes;
                i.files_done = files;
            });
            if failed == 0 {
                TransferState::Done
            } else {
                TransferState::Failed {
                    reason: format!("{failed} of {} files failed", row.manifest.file_count()),
                }
            }
        }
        Err(RecvError::Record(ferry_block::record::RecordError::Io(e))) => {
            match StreamError::from_io(e) {
                // The sender cancelled, and its reset of the data stream arrived first.
                StreamError::Peer(Code::Cancelled) => {
                    remove_temps(row);
                    TransferState::Cancelled { by: Side::Peer }
                }
                e => TransferState::Interrupted {
                    reason: format!("connection lost: {e}"),
                },
            }
        }
        Err(e) => {
            let mut reason = match &e {
                RecvError::Disk { .. } => format!("the receiver cannot write: {e}"),
                _ => format!("the sender's data was invalid: {e}"),
            };
            truncate(&mut reason, MAX_REASON);
            let _ = tell(
                s,
                &Control::Abort {
                    reason: reason.clone(),
                },
                MAX_CONTROL,
            )
            .await;
            remove_temps(row);
            TransferState::Failed { reason }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
