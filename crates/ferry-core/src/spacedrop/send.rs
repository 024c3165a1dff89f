//! The sending flow: offer, wait for the answer, stream the data, follow the receiver's
//! progress; on a dropped connection, wait for the peer and offer again as a resume.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ferry_block::send::{send_files, FileJob};
use ferry_p2p::router::open;
use ferry_p2p::wire::write_frame;
use ferry_p2p::{Code, StreamError};
use ferry_util::lock;
use tokio::sync::watch;

use super::commands::{control_for, Cancel, Cmd, Commands};
use super::decide::{self, apply_pause, Attempt, FromReceiver};
use super::state::{SpacedropState, EVENT_INTERVAL};
use super::store::{FileStatus, TransferRow};
use super::types::{FailedFile, Side, TransferInfo, TransferState};
use super::wire::{
    Answer, Control, DataStart, FrameReader, Offer, TransferId, CONTROL_ID, DATA_ID, MAX_ANSWER,
    MAX_CONTROL, MAX_OFFER, VERSION,
};

pub(super) fn spawn(shared: Arc<SpacedropState>, row: TransferRow, resume: bool) {
    tokio::spawn(run(shared, row, resume));
}

/// How long the liveness probe before a resume may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The first wait before trying again; it doubles with each failed attempt, up to 10 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Silence from the receiver (no progress, no message) that ends an attempt while data flows.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the last word to a receiver that is given up on (an abort) may wait for room.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

async fn run(shared: Arc<SpacedropState>, row: TransferRow, mut resume: bool) {
    let id = row.id;
    if lock(&shared.live).contains_key(&id) {
        return;
    }
    let mut cmds = shared.register(TransferInfo::starting(&row, TransferState::Waiting));
    // Entries the receiver reported failed (since the last resume, which settles them again).
    let mut failed = HashSet::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut accepted = false;
        let Some(conn) = cmds.cancel.or(connect(&shared, &row)).await else {
            return shared.finish(&id, TransferState::Cancelled { by: Side::Local });
        };
        let outcome = match conn {
            Some(conn) => {
                attempt(
                    &shared,
                    &row,
                    conn,
                    resume,
                    &mut cmds,
                    &mut failed,
                    &mut accepted,
                )
                .await
            }
            None => Attempt::Interrupted(format!("waiting for {} to be reachable", name(&row))),
        };
        // An attempt the receiver took starts the waits over: interruptions hours apart in a
        // long transfer each waited longer (up to 10 s) though the peer was back at once.
        if accepted {
            backoff = FIRST_BACKOFF;
        }
        let reason = match outcome {
            Attempt::Final(state) => return shared.finish(&id, state),
            Attempt::Interrupted(reason) => reason,
        };
        tracing::info!(transfer = %id.hex(), %reason, "transfer interrupted; will resume");
        resume = true;
        let _ = shared.store.set_state(&id, "interrupted", Some(&reason));
        shared.update(&id, |i| i.state = TransferState::Interrupted { reason });
        // Wait for the peer to come back, or for the user.
        let mut events = shared.p2p().map(|p| p.subscribe());
        let back = async {
            match events.as_mut() {
                Some(rx) => loop {
                    match rx.recv().await {
                        Ok(
                            ferry_p2p::P2pEvent::PeerFound(p) | ferry_p2p::P2pEvent::PeerChanged(p),
                        ) if p.id == row.peer && p.state == ferry_p2p::PeerState::Connected => {
                            break
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                        _ => {}
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = back => {}
            _ = tokio::time::sleep(backoff) => {}
            cmd = cmds.next() => match cmd {
                Some(Cmd::Cancel) | None => return shared.finish(&id, TransferState::Cancelled { by: Side::Local }),
                Some(Cmd::Interrupt) => return shared.finish(&id, stopped()),
                _ => {}
            },
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn name(row: &TransferRow) -> String {
    if row.peer_name.is_empty() {
        row.peer.short()
    } else {
        row.peer_name.clone()
    }
}

/// The peer's live connection, or a dial to its known or last addresses.
async fn connect(shared: &SpacedropState, row: &TransferRow) -> Option<quinn::Connection> {
    let p2p = shared.p2p()?;
    if let Ok(c) = p2p.connect_peer(&row.peer).await {
        return Some(c);
    }
    let addr = row.peer_addr.as_ref()?.parse().ok()?;
    p2p.connect(addr, Some(row.peer)).await.ok()?;
    p2p.connection(&row.peer)
}

/// One attempt: offer, wait for the answer, then send and follow the receiver to the end.
async fn attempt(
    shared: &SpacedropState,
    row: &TransferRow,
    conn: quinn::Connection,
    resume: bool,
    cmds: &mut Commands,
    failed: &mut HashSet<u32>,
    accepted: &mut bool,
) -> Attempt {
    let cancel = cmds.cancel.clone();
    if resume {
        if let Err(end) = probe(&conn, &cancel).await {
            return end;
        }
    }
    let (mut cs, mut cr) = match offer(shared, row, &conn, resume, &cancel).await {
        Ok(streams) => streams,
        Err(end) => return end,
    };
    let (answer, paused_early) = match wait_for_answer(shared, &mut cs, &mut cr, cmds).await {
        Ok(answer) => answer,
        Err(end) => return end,
    };
    let starts = match decide::answered(answer, resume) {
        Ok(starts) => starts,
        Err(end) => return end,
    };
    *accepted = true;
    let plan = match decide::sending(&row.manifest, &row.sources, &starts) {
        Ok(plan) => plan,
        Err(why) => return abort(&mut cs, &mut cr, &cancel, why).await,
    };
    begin(shared, row, resume, &plan, failed);
    let ds = match open_data(
        shared,
        row.id,
        &conn,
        &mut cs,
        &mut cr,
        &cancel,
        paused_early,
    )
    .await
    {
        Ok(ds) => ds,
        Err(end) => return end,
    };
    let streams = Streams { conn, cs, cr };
    follow(
        shared,
        row,
        streams,
        ds,
        plan.jobs,
        paused_early,
        cmds,
        failed,
    )
    .await
}

fn lost(e: &dyn std::fmt::Display) -> Attempt {
    Attempt::Interrupted(format!("connection lost: {e}"))
}

/// Before a resume, makes sure the connection really reaches the peer: one to a receiver that
/// was killed and restarted at the same address can look alive for a while, and an offer sent
/// on it would wait for an answer that never comes.
async fn probe(conn: &quinn::Connection, cancel: &Cancel) -> Result<(), Attempt> {
    let probe = tokio::time::timeout(
        PROBE_TIMEOUT,
        ferry_p2p::ping::ping(conn, 1, Duration::ZERO),
    );
    let Some(alive) = cancel.or(probe).await else {
        return Err(cancelled_here());
    };
    if !matches!(alive, Ok(Ok(_))) {
        conn.close(0u32.into(), b"no answer to a probe");
        return Err(Attempt::Interrupted(
            "the connection did not answer; dialing again".into(),
        ));
    }
    Ok(())
}

/// Opens the control stream and writes the offer.
async fn offer(
    shared: &SpacedropState,
    row: &TransferRow,
    conn: &quinn::Connection,
    resume: bool,
    cancel: &Cancel,
) -> Result<(quinn::SendStream, quinn::RecvStream), Attempt> {
    let (mut cs, mut cr) = match cancel.or(open(conn, CONTROL_ID, VERSION)).await {
        None => return Err(cancelled_here()),
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(lost(&e)),
    };
    let offer = Offer {
        transfer: row.id,
        manifest: row.manifest.clone(),
        resume,
    };
    // A receiver that does not read the offer (up to 48 MiB) holds this write.
    let Some(wrote) = cancel.or(write_frame(&mut cs, &offer, MAX_OFFER)).await else {
        return Err(cancel_streams(&mut cs, &mut cr));
    };
    match wrote {
        Ok(()) => {}
        Err(StreamError::TooLarge { .. }) => {
            return Err(Attempt::Final(TransferState::Failed {
                reason: "too many files in one transfer".into(),
            }))
        }
        Err(e) => return Err(lost(&e)),
    }
    shared.update(&row.id, |i| i.state = TransferState::Waiting);
    Ok((cs, cr))
}

/// Waits for the answer (or why none came), and whether the user paused meanwhile: a pause
/// asked for before the answer applies once data could flow.
async fn wait_for_answer(
    shared: &SpacedropState,
    cs: &mut quinn::SendStream,
    cr: &mut quinn::RecvStream,
    cmds: &mut Commands,
) -> Result<(Result<Answer, StreamError>, bool), Attempt> {
    let wait = lock(&shared.cfg).prompt_timeout + Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + wait;
    let mut paused_early = false;
    // A pause or resume meanwhile drops the read and starts it again: it must keep what it
    // already has of a large answer (see FrameReader), and the deadline stays the same.
    let mut answers = FrameReader::new(MAX_ANSWER);
    loop {
        tokio::select! {
            a = tokio::time::timeout_at(deadline, answers.next::<_, Answer>(cr)) => {
                let answer = match a {
                    Err(_) => Err(StreamError::Timeout("an answer")),
                    Ok(Ok(Some(a))) => Ok(a),
                    Ok(Ok(None)) => Err(StreamError::Truncated),
                    Ok(Err(e)) => Err(e),
                };
                return Ok((answer, paused_early));
            }
            cmd = cmds.next() => match cmd {
                Some(Cmd::Cancel) | None => return Err(cancel_streams(cs, cr)),
                Some(Cmd::Interrupt) => return Err(Attempt::Final(stopped())),
                Some(Cmd::Pause) => paused_early = true,
                Some(Cmd::Resume) => paused_early = false,
            },
        }
    }
}

/// Records that data is about to flow. The receiver's plan settles every file that failed
/// before: asked for again (each gets a new outcome now) or already there. Kept, a file that
/// failed and then arrived on a resume left the transfer "1 of N files failed".
fn begin(
    shared: &SpacedropState,
    row: &TransferRow,
    resume: bool,
    plan: &decide::Sending,
    failed: &mut HashSet<u32>,
) {
    let id = row.id;
    if resume {
        failed.clear();
        if let Err(e) = shared.store.clear_failed(&id) {
            tracing::warn!(error = %e, "could not clear earlier failures");
        }
    }
    let _ = shared.store.set_state(&id, "transferring", None);
    shared.update(&id, |i| {
        i.state = TransferState::Transferring;
        i.bytes_resumed = plan.resumed;
        i.bytes_done = plan.resumed;
        i.files_done = plan.already;
        if resume {
            i.failed = Arc::from([]);
            i.failed_count = 0;
        }
    });
}

/// Opens the data stream and says which transfer it carries; passes on a pause asked for
/// before the answer.
async fn open_data(
    shared: &SpacedropState,
    id: TransferId,
    conn: &quinn::Connection,
    cs: &mut quinn::SendStream,
    cr: &mut quinn::RecvStream,
    cancel: &Cancel,
    paused_early: bool,
) -> Result<quinn::SendStream, Attempt> {
    let (mut ds, _dr) = match cancel.or(open(conn, DATA_ID, VERSION)).await {
        None => return Err(cancel_streams(cs, cr)),
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(lost(&e)),
    };
    let start = DataStart { transfer: id };
    let start = write_frame(&mut ds, &start, MAX_CONTROL);
    match cancel.or(start).await {
        None => {
            let _ = ds.reset(Code::Cancelled.var_int());
            return Err(cancel_streams(cs, cr));
        }
        Some(Err(e)) => return Err(lost(&e)),
        Some(Ok(())) => {}
    }
    if paused_early {
        if cancel
            .or(write_frame(cs, &Control::Pause, MAX_CONTROL))
            .await
            .is_none()
        {
            let _ = ds.reset(Code::Cancelled.var_int());
            return Err(cancel_streams(cs, cr));
        }
        shared.update(&id, |i| apply_pause(i, true, Side::Local));
    }
    Ok(ds)
}

/// An attempt's connection and control stream, once the offer is accepted.
struct Streams {
    conn: quinn::Connection,
    cs: quinn::SendStream,
    cr: quinn::RecvStream,
}

/// Sends the files while following the receiver's reports and the user's commands, until
/// the transfer ends or the attempt does.
#[allow(clippy::too_many_arguments)]
async fn follow(
    shared: &SpacedropState,
    row: &TransferRow,
    streams: Streams,
    mut ds: quinn::SendStream,
    jobs: Vec<FileJob>,
    paused_early: bool,
    cmds: &mut Commands,
    failed: &mut HashSet<u32>,
) -> Attempt {
    let id = row.id;
    let Streams {
        conn,
        mut cs,
        mut cr,
    } = streams;
    let cancel = cmds.cancel.clone();
    let (pause_tx, pause_rx) = watch::channel(paused_early);
    let (cancel_tx, mut cancel_rx) = watch::channel(false);
    let mut data = tokio::spawn(async move {
        let sent = AtomicU64::new(0);
        tokio::select! {
            r = async { send_files(&mut Quic(&mut ds), jobs, pause_rx, &sent).await } => {
                let _ = ds.finish();
                r.map_err(|e| e.to_string())
            }
            _ = cancel_rx.changed() => {
                let _ = ds.reset(Code::Cancelled.var_int());
                Err("cancelled".into())
            }
        }
    });
    let mut data_done = false;
    // The receiver reports progress several times a second while data flows; silence that
    // long while not paused means a connection that only looks alive.
    let mut last_heard = tokio::time::Instant::now();
    // Read in a `select!`: needs a reader that keeps a half-read frame (see FrameReader).
    let mut control = FrameReader::new(MAX_CONTROL);
    // Announces a peer's pause or resume that was held back (see `SpacedropState::update_from_peer`)
    // even if the receiver sends nothing more.
    let mut announce = tokio::time::interval(EVENT_INTERVAL);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        let paused = *pause_tx.borrow();
        tokio::select! {
            _ = announce.tick() => shared.flush(&id),
            _ = tokio::time::sleep_until(last_heard + STALL_TIMEOUT), if !paused => {
                let _ = cancel_tx.send(true);
                conn.close(0u32.into(), b"stalled");
                break Attempt::Interrupted(format!(
                    "no word from the receiver for {} s; reconnecting",
                    STALL_TIMEOUT.as_secs()
                ));
            }
            msg = control.next::<_, Control>(&mut cr) => match decide::from_receiver(heard(&mut last_heard, msg)) {
                FromReceiver::Progress { bytes, files } => shared.update(&id, |i| {
                    i.bytes_done = bytes.min(i.bytes_total);
                    i.files_done = files as usize;
                }),
                FromReceiver::Failed { entry, reason } => note_failed(shared, row, failed, entry, reason),
                FromReceiver::Pause(pause) => {
                    let _ = pause_tx.send(pause);
                    shared.update_from_peer(&id, |i| apply_pause(i, pause, Side::Peer));
                }
                FromReceiver::Finished => break finished(shared, &id),
                FromReceiver::End(end) => break end,
                FromReceiver::Nothing => {}
            },
            cmd = cmds.next() => match cmd {
                Some(Cmd::Cancel) | None => {
                    let _ = cancel_tx.send(true);
                    break cancel_streams(&mut cs, &mut cr);
                }
                Some(Cmd::Interrupt) => {
                    let _ = cancel_tx.send(true);
                    break Attempt::Final(stopped());
                }
                Some(cmd) => {
                    let pause = matches!(cmd, Cmd::Pause);
                    let _ = pause_tx.send(pause);
                    if let Some(c) = control_for(&cmd) {
                        // A receiver that stopped reading holds this write; a cancel does not wait.
                        if cancel.or(write_frame(&mut cs, &c, MAX_CONTROL)).await.is_none() {
                            let _ = cancel_tx.send(true);
                            break cancel_streams(&mut cs, &mut cr);
                        }
                    }
                    shared.update(&id, |i| apply_pause(i, pause, Side::Local));
                }
            },
            r = &mut data, if !data_done => {
                data_done = true;
                if let Ok(Err(e)) = r {
                    // The receiver says why on the control stream; this only logs it.
                    tracing::info!(transfer = %id.hex(), error = %e, "data stream ended early");
                }
            }
        }
    };
    if !data_done {
        let _ = cancel_tx.send(true);
        data.abort();
    }
    end
}

/// A receiver's report that `entry` failed: listed and stored once per file (see
/// [`decide::lists_failure`]); stored, listings after a restart and the full list read it.
fn note_failed(
    shared: &SpacedropState,
    row: &TransferRow,
    failed: &mut HashSet<u32>,
    entry: u32,
    reason: String,
) {
    if !decide::lists_failure(&row.manifest, failed, entry) {
        return;
    }
    let path = row.manifest.display_path(entry);
    let size = row
        .manifest
        .entries
        .get(entry as usize)
        .map_or(0, |e| e.size);
    let status = FileStatus::Failed(reason.clone());
    if let Err(e) = shared.store.set_file(&row.id, entry, size, &path, &status) {
        tracing::warn!(error = %e, "could not record a failed file");
    }
    shared.update(&row.id, |i| i.add_failed(FailedFile { path, reason }));
}

/// Notes that the receiver was heard from, passing its message on.
fn heard<T>(at: &mut tokio::time::Instant, msg: T) -> T {
    *at = tokio::time::Instant::now();
    msg
}

/// Gives up on the transfer, telling the receiver why (unless it does not read, or the user
/// cancels meanwhile).
async fn abort(
    cs: &mut quinn::SendStream,
    cr: &mut quinn::RecvStream,
    cancel: &Cancel,
    reason: &str,
) -> Attempt {
    let msg = Control::Abort {
        reason: reason.into(),
    };
    let told = tokio::time::timeout(ABORT_TIMEOUT, write_frame(cs, &msg, MAX_CONTROL));
    if cancel.or(told).await.is_none() {
        return cancel_streams(cs, cr);
    }
    Attempt::Final(TransferState::Failed {
        reason: reason.into(),
    })
}

/// The user cancelled before any stream was open.
fn cancelled_here() -> Attempt {
    Attempt::Final(TransferState::Cancelled { by: Side::Local })
}

/// The user cancelled: the control stream is reset both ways, which drops whatever is still
/// queued for the receiver and tells it at once (it ends as cancelled by its peer).
fn cancel_streams(cs: &mut quinn::SendStream, cr: &mut quinn::RecvStream) -> Attempt {
    let _ = cs.reset(Code::Cancelled.var_int());
    let _ = cr.stop(Code::Cancelled.var_int());
    cancelled_here()
}

fn stopped() -> TransferState {
    TransferState::Interrupted {
        reason: "this node stopped".into(),
    }
}

fn finished(shared: &SpacedropState, id: &TransferId) -> Attempt {
    let (failed, total) = lock(&shared.live)
        .get(id)
        .map(|l| (l.info.failed_count, l.info.files_total))
        .unwrap_or((0, 0));
    let end = decide::completed(failed, total);
    if end == TransferState::Done {
        shared.update(id, |i| i.bytes_done = i.bytes_total);
    }
    Attempt::Final(end)
}

/// The data stream as Spaceblock's sink: file buffers go to quinn as they are (`write_chunk`),
/// not copied into its send buffer.
struct Quic<'a>(&'a mut quinn::SendStream);

impl ferry_block::send::Sink for Quic<'_> {
    async fn put(&mut self, buf: &[u8]) -> std::io::Result<()> {
        Ok(self.0.write_all(buf).await?)
    }

    async fn put_owned(&mut self, buf: Vec<u8>) -> std::io::Result<()> {
        Ok(self.0.write_chunk(bytes::Bytes::from(buf)).await?)
    }

    async fn flush_all(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
