//! The sending flow: offer, wait for the answer, stream the data, follow the receiver's
//! progress; on a dropped connection, wait for the peer and offer again as a resume.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ferry_block::send::{send_files, FileJob};
use ferry_block::EntryKind;
use ferry_p2p::router::open;
use ferry_p2p::wire::write_frame;
use ferry_p2p::{Code, StreamError};
use tokio::sync::watch;

use super::commands::{Cancel, Commands};
use super::store::{Direction, FileStatus, TransferRow};
use super::wire::{
    Answer, Control, DataStart, FrameReader, Offer, Refusal, CONTROL_ID, DATA_ID, MAX_ANSWER,
    MAX_CONTROL, MAX_OFFER, VERSION,
};
use super::{
    apply_pause, control_for, lock, Cmd, FailedFile, Shared, Side, TransferInfo, TransferState,
    EVENT_INTERVAL,
};

pub(super) fn spawn(shared: Arc<Shared>, row: TransferRow, resume: bool) {
    tokio::spawn(run(shared, row, resume));
}

/// How an attempt ended: for good, or interrupted (try again when the peer is back).
enum Attempt {
    Final(TransferState),
    Interrupted(String),
}

/// How long the liveness probe before a resume may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The first wait before trying again; it doubles with each failed attempt, up to 10 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Silence from the receiver (no progress, no message) that ends an attempt while data flows.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the last word to a receiver that is given up on (an abort) may wait for room.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

async fn run(shared: Arc<Shared>, row: TransferRow, mut resume: bool) {
    let id = row.id;
    if lock(&shared.live).contains_key(&id) {
        return;
    }
    let info = TransferInfo {
        id: id.hex(),
        direction: Direction::Send,
        peer: row.peer,
        peer_name: row.peer_name.clone(),
        state: TransferState::Waiting,
        files_total: row.manifest.file_count(),
        files_done: 0,
        bytes_total: row.manifest.total_bytes(),
        bytes_done: 0,
        bytes_resumed: 0,
        speed_bps: 0.0,
        eta_secs: None,
        current: None,
        dest: None,
        renamed: Arc::from([]),
        renamed_count: 0,
        failed: Arc::from([]),
        failed_count: 0,
    };
    let mut cmds = shared.register(info);
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
async fn connect(shared: &Shared, row: &TransferRow) -> Option<quinn::Connection> {
    let p2p = shared.p2p()?;
    if let Ok(c) = p2p.connect_peer(&row.peer).await {
        return Some(c);
    }
    let addr = row.peer_addr.as_ref()?.parse().ok()?;
    p2p.connect(addr, Some(row.peer)).await.ok()?;
    p2p.connection(&row.peer)
}

async fn attempt(
    shared: &Shared,
    row: &TransferRow,
    conn: quinn::Connection,
    resume: bool,
    cmds: &mut Commands,
    failed: &mut HashSet<u32>,
    accepted: &mut bool,
) -> Attempt {
    let id = row.id;
    let cancel = cmds.cancel.clone();
    let interrupted =
        |e: &dyn std::fmt::Display| Attempt::Interrupted(format!("connection lost: {e}"));
    // Before a resume, make sure the connection really reaches the peer: one to a receiver
    // that was killed and restarted at the same address can look alive for a while, and an
    // offer sent on it would wait for an answer that never comes.
    if resume {
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            ferry_p2p::ping::ping(&conn, 1, Duration::ZERO),
        );
        let Some(alive) = cancel.or(probe).await else {
            return cancelled_here();
        };
        if !matches!(alive, Ok(Ok(_))) {
            conn.close(0u32.into(), b"no answer to a probe");
            return Attempt::Interrupted("the connection did not answer; dialing again".into());
        }
    }
    let (mut cs, mut cr) = match cancel.or(open(&conn, CONTROL_ID, VERSION)).await {
        None => return cancelled_here(),
        Some(Ok(s)) => s,
        Some(Err(e)) => return interrupted(&e),
    };
    let offer = Offer {
        transfer: id,
        manifest: row.manifest.clone(),
        resume,
    };
    // A receiver that does not read the offer (up to 48 MiB) holds this write.
    let Some(wrote) = cancel.or(write_frame(&mut cs, &offer, MAX_OFFER)).await else {
        return cancel_streams(&mut cs, &mut cr);
    };
    match wrote {
        Ok(()) => {}
        Err(StreamError::TooLarge { .. }) => {
            return Attempt::Final(TransferState::Failed {
                reason: "too many files in one transfer".into(),
            })
        }
        Err(e) => return interrupted(&e),
    }
    shared.update(&id, |i| i.state = TransferState::Waiting);
    let wait = lock(&shared.cfg).prompt_timeout + Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + wait;
    // A pause asked for before the answer applies once data could flow.
    let mut paused_early = false;
    // A pause or resume meanwhile drops the read and starts it again: it must keep what it
    // already has of a large answer (see FrameReader), and the deadline stays the same.
    let mut answers = FrameReader::new(MAX_ANSWER);
    let answer = loop {
        tokio::select! {
            a = tokio::time::timeout_at(deadline, answers.next::<_, Answer>(&mut cr)) => break match a {
                Err(_) => Err(StreamError::Timeout("an answer")),
                Ok(Ok(Some(a))) => Ok(a),
                Ok(Ok(None)) => Err(StreamError::Truncated),
                Ok(Err(e)) => Err(e),
            },
            cmd = cmds.next() => match cmd {
                Some(Cmd::Cancel) | None => return cancel_streams(&mut cs, &mut cr),
                Some(Cmd::Interrupt) => return Attempt::Final(stopped()),
                Some(Cmd::Pause) => paused_early = true,
                Some(Cmd::Resume) => paused_early = false,
            },
        }
    };
    let starts = match answer {
        Ok(Answer::Accepted { starts }) => {
            *accepted = true;
            starts
        }
        // A busy receiver may still hold the previous run of this transfer: try again later.
        Ok(Answer::Rejected(Refusal::Busy)) if resume => {
            return Attempt::Interrupted("the receiver is busy".into())
        }
        Ok(Answer::Rejected(r)) => {
            return Attempt::Final(TransferState::Rejected {
                reason: r.to_string(),
            })
        }
        // A resume unanswered (a receiver that is stuck, or a connection that only looks
        // alive) is tried again; it was ended for good as "rejected", which nobody had done.
        Err(StreamError::Timeout(_)) if resume => {
            return Attempt::Interrupted(
                "the receiver did not answer the resume; trying again".into(),
            )
        }
        Err(StreamError::Timeout(_)) => {
            return Attempt::Final(TransferState::Rejected {
                reason: "no answer in time".into(),
            })
        }
        Err(e @ (StreamError::Connection(_) | StreamError::Io(_))) => return interrupted(&e),
        Err(e) => {
            return Attempt::Final(TransferState::Failed {
                reason: format!("receiver misbehaved: {e}"),
            })
        }
    };
    if starts.len() != row.manifest.entries.len() {
        return abort(
            &mut cs,
            &mut cr,
            &cancel,
            "the receiver answered with a plan that does not fit",
        )
        .await;
    }
    let mut jobs = vec![];
    let (mut resumed, mut already) = (0u64, 0usize);
    for (i, e) in row.manifest.entries.iter().enumerate() {
        if e.kind != EntryKind::File {
            continue;
        }
        match (starts[i], row.sources.get(i)) {
            (Some(offset), Some(source)) if offset <= e.size => {
                resumed += offset;
                jobs.push(FileJob {
                    id: i as u32,
                    source: source.clone(),
                    offset,
                    size: e.size,
                    mtime: e.mtime,
                });
            }
            (Some(_), _) => {
                let why = "the receiver asked for a bad offset";
                return abort(&mut cs, &mut cr, &cancel, why).await;
            }
            (None, _) => {
                resumed += e.size;
                already += 1;
            }
        }
    }
    // The receiver's plan settles every file that failed before: asked for again (each gets a
    // new outcome now) or already there. Kept, a file that failed and then arrived on a resume
    // left the transfer "1 of N files failed".
    if resume {
        failed.clear();
        if let Err(e) = shared.store.clear_failed(&id) {
            tracing::warn!(error = %e, "could not clear earlier failures");
        }
    }
    let _ = shared.store.set_state(&id, "transferring", None);
    shared.update(&id, |i| {
        i.state = TransferState::Transferring;
        i.bytes_resumed = resumed;
        i.bytes_done = resumed;
        i.files_done = already;
        if resume {
            i.failed = Arc::from([]);
            i.failed_count = 0;
        }
    });
    let (mut ds, _dr) = match cancel.or(open(&conn, DATA_ID, VERSION)).await {
        None => return cancel_streams(&mut cs, &mut cr),
        Some(Ok(s)) => s,
        Some(Err(e)) => return interrupted(&e),
    };
    let start = DataStart { transfer: id };
    let start = write_frame(&mut ds, &start, MAX_CONTROL);
    match cancel.or(start).await {
        None => {
            let _ = ds.reset(Code::Cancelled.var_int());
            return cancel_streams(&mut cs, &mut cr);
        }
        Some(Err(e)) => return interrupted(&e),
        Some(Ok(())) => {}
    }
    let (pause_tx, pause_rx) = watch::channel(paused_early);
    if paused_early {
        if cancel
            .or(write_frame(&mut cs, &Control::Pause, MAX_CONTROL))
            .await
            .is_none()
        {
            let _ = ds.reset(Code::Cancelled.var_int());
            return cancel_streams(&mut cs, &mut cr);
        }
        shared.update(&id, |i| apply_pause(i, true, Side::Local));
    }
    let (cancel_tx, mut cancel_rx) = watch::channel(false);
    let mut data = tokio::spawn(async move {
        let sent = AtomicU64::new(0);
        tokio::select! {
            r = send_files(&mut ds, jobs, pause_rx, &sent) => {
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
    // Announces a peer's pause or resume that was held back (see `Shared::update_from_peer`)
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
            msg = control.next::<_, Control>(&mut cr) => match heard(&mut last_heard, msg) {
                Ok(Some(Control::Progress { bytes, files })) => shared.update(&id, |i| {
                    i.bytes_done = bytes.min(i.bytes_total);
                    i.files_done = files as usize;
                }),
                Ok(Some(Control::FileDone { .. })) => {}
                // Listed once per file. Every report was listed, so a receiver repeating one
                // (or naming entries that are no files) grew this list without end: 27,648
                // reports in 3 s made "27648 of 1 files failed" and 1 GiB of events.
                Ok(Some(Control::FileFailed { id: entry, reason })) => {
                    let is_file = row.manifest.entries.get(entry as usize).is_some_and(|e| e.kind == EntryKind::File);
                    if is_file && failed.insert(entry) {
                        let path = row.manifest.display_path(entry);
                        // Stored too: listings after a restart and the full list read it.
                        let size = row.manifest.entries.get(entry as usize).map_or(0, |e| e.size);
                        let status = FileStatus::Failed(reason.clone());
                        if let Err(e) = shared.store.set_file(&id, entry, size, &path, &status) {
                            tracing::warn!(error = %e, "could not record a failed file");
                        }
                        shared.update(&id, |i| i.add_failed(FailedFile { path, reason }));
                    }
                }
                Ok(Some(Control::Pause)) => {
                    let _ = pause_tx.send(true);
                    shared.update_from_peer(&id, |i| apply_pause(i, true, Side::Peer));
                }
                Ok(Some(Control::Resume)) => {
                    let _ = pause_tx.send(false);
                    shared.update_from_peer(&id, |i| apply_pause(i, false, Side::Peer));
                }
                Ok(Some(Control::Finished)) => break finished(shared, &id),
                Ok(Some(Control::Abort { reason })) => break Attempt::Final(TransferState::Failed { reason }),
                Ok(None) => break Attempt::Interrupted("the receiver closed the transfer".into()),
                Err(StreamError::Peer(Code::Cancelled)) => break Attempt::Final(TransferState::Cancelled { by: Side::Peer }),
                Err(e @ (StreamError::Connection(_) | StreamError::Io(_))) => break interrupted(&e),
                Err(e) => break Attempt::Final(TransferState::Failed { reason: format!("receiver misbehaved: {e}") }),
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

fn finished(shared: &Shared, id: &super::wire::TransferId) -> Attempt {
    let (failed, total) = lock(&shared.live)
        .get(id)
        .map(|l| (l.info.failed_count, l.info.files_total))
        .unwrap_or((0, 0));
    if failed == 0 {
        shared.update(id, |i| i.bytes_done = i.bytes_total);
        Attempt::Final(TransferState::Done)
    } else {
        Attempt::Final(TransferState::Failed {
            reason: format!("{failed} of {total} files failed"),
        })
    }
}
