//! Spacedrop's decisions, as plain functions: whether an offer is admitted, where each file
//! starts, what an answer or a peer's message means for the transfer, and which state follows
//! which. The flows (`send.rs`, `receive.rs`) move bytes and wait; they ask these what to do,
//! and these are tested here without a socket.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ferry_block::recv::Expect;
use ferry_block::send::FileJob;
use ferry_block::{EntryKind, Manifest};
use ferry_p2p::{Code, PeerId, StreamError};

use super::types::{AcceptPolicy, Direction, History, Side, TransferInfo, TransferState};
use super::wire::{Answer, Control, Offer, Refusal, Starts, TransferId};

/// Incoming transfers running at once; more offers are answered `Busy`.
pub(super) const MAX_INCOMING: usize = 16;
/// Prompts a node shows at once; more offers are refused as busy (no prompt spam).
pub(super) const MAX_PROMPTS: usize = 4;

// The receiver: admitting an offer.

/// What the receiver has stored under an offer's transfer id.
pub(super) struct Stored<'a> {
    pub peer: PeerId,
    pub direction: Direction,
    pub manifest: &'a ferry_block::Manifest,
    pub state: &'a str,
}

/// How an offer goes on, once its id is checked.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// The known resume of a transfer stored here: no prompt, its stored layout.
    Resume,
    /// A transfer new here: policy or prompt, then space and layout.
    New,
}

pub(super) fn taken() -> Refusal {
    Refusal::Invalid("that transfer id is taken".into())
}

/// An offer against what is stored under its id. The id belongs to another transfer (ours, or
/// another peer's) unless the same proven peer resumes the same manifest it sent us: only a
/// resume may name a known id, or a fresh offer reusing one would be a second transfer under
/// the first one's name.
pub(super) fn admit(
    stored: Option<Stored>,
    peer: PeerId,
    offer: &Offer,
) -> Result<Admission, Refusal> {
    let Some(row) = stored else {
        return Ok(Admission::New);
    };
    if row.peer != peer
        || row.direction != Direction::Receive
        || *row.manifest != offer.manifest
        || !offer.resume
    {
        return Err(taken());
    }
    match row.state {
        "cancelled" | "rejected" | "failed" => Err(Refusal::Declined),
        _ => Ok(Admission::Resume),
    }
}

/// The answer to an offer whose id another offer (by `holder`) is deciding, preparing or
/// running right now: the same sender resuming an offer it just gave up on tries again
/// shortly; anyone else's is refused.
pub(super) fn claimed(holder: PeerId, peer: PeerId, resume: bool) -> Refusal {
    if holder == peer && resume {
        Refusal::Busy
    } else {
        taken()
    }
}

/// Room for one more incoming transfer, with `receiving` live and the id itself live or not.
pub(super) fn room(receiving: usize, id_live: bool) -> Result<(), Refusal> {
    if id_live || receiving >= MAX_INCOMING {
        Err(Refusal::Busy)
    } else {
        Ok(())
    }
}

/// Whether the policy accepts `peer`'s offer without asking anyone.
pub(super) fn accepts_unasked(policy: &AcceptPolicy, peer: &PeerId) -> bool {
    match policy {
        AcceptPolicy::Everyone => true,
        AcceptPolicy::From(peers) => peers.contains(peer),
        AcceptPolicy::Ask => false,
    }
}

/// Whether a LocalSend device's offer is accepted without asking: only under "accept from
/// everyone". An `--accept-from` list names Ferry identities, which a LocalSend device never
/// has (its fingerprint may be a mere claim), so it never matches one.
pub(super) fn accepts_localsend_unasked(policy: &AcceptPolicy) -> bool {
    matches!(policy, AcceptPolicy::Everyone)
}

/// Whether another prompt may open, with `open` prompts showing and `peer` having one or not.
pub(super) fn prompt_room(open: usize, peer_has_one: bool) -> bool {
    open < MAX_PROMPTS && !peer_has_one
}

// The receiver: where each file starts.

/// A new transfer: every file from its first byte, folders skipped.
pub(super) fn fresh_starts(m: &Manifest) -> Starts {
    m.entries
        .iter()
        .map(|e| (e.kind == EntryKind::File).then_some(0))
        .collect()
}

/// A resumed transfer: skip what is done, continue what has a partial file of `have(entry)`
/// bytes (the whole-file hash re-checks them), restart the rest.
pub(super) fn resume_starts(
    m: &Manifest,
    done: &HashSet<u32>,
    have: impl Fn(u32) -> u64,
) -> Starts {
    m.entries
        .iter()
        .enumerate()
        .map(|(i, e)| match e.kind {
            EntryKind::Dir => None,
            EntryKind::File if done.contains(&(i as u32)) => None,
            EntryKind::File => Some(have(i as u32).min(e.size)),
        })
        .collect()
}

/// Where a partial file of entry `entry` lives until it is verified: in the destination's
/// root, named from the transfer id and the entry, never from a name the peer chose.
pub(super) fn temp_path(dest: &Path, id: &TransferId, entry: u32) -> PathBuf {
    dest.join(format!(".ferry-{}-{entry}.part", id.hex()))
}

/// What the receiver expects on the data stream, and what it holds already.
pub(super) struct Expected {
    pub plan: HashMap<u32, Expect>,
    /// Bytes it holds before this run: skipped files whole, continued files up to their start.
    pub resumed: u64,
    /// Files it holds whole.
    pub already: usize,
}

/// The receiver's side of `starts` for the transfer `id` laid out as `layout` under `dest`.
pub(super) fn expected(
    m: &Manifest,
    layout: &[PathBuf],
    dest: &Path,
    id: &TransferId,
    starts: &Starts,
) -> Expected {
    let mut out = Expected {
        plan: HashMap::new(),
        resumed: 0,
        already: 0,
    };
    for (i, e) in m.entries.iter().enumerate() {
        if e.kind != EntryKind::File {
            continue;
        }
        match starts.get(i).copied().flatten() {
            Some(offset) => {
                out.resumed += offset;
                let local = layout.get(i).cloned().unwrap_or_default();
                out.plan.insert(
                    i as u32,
                    Expect {
                        temp: temp_path(dest, id, i as u32),
                        dest: dest.join(local),
                        offset,
                        size: e.size,
                    },
                );
            }
            None => {
                out.resumed += e.size;
                out.already += 1;
            }
        }
    }
    out
}

// The receiver: what the sender says once data flows.

/// A sender's control message (or the end of its control stream) to a receiver.
#[derive(Debug, PartialEq)]
pub(super) enum FromSender {
    /// Its pause (true) or resume.
    Pause(bool),
    /// It finished writing control messages; the data stream decides.
    Closed,
    /// The transfer ends here.
    End(TransferState),
}

pub(super) fn from_sender(msg: Result<Option<Control>, StreamError>) -> FromSender {
    match msg {
        Ok(Some(Control::Pause)) => FromSender::Pause(true),
        Ok(Some(Control::Resume)) => FromSender::Pause(false),
        Ok(Some(Control::Abort { reason })) => FromSender::End(TransferState::Failed {
            reason: format!("the sender gave up: {reason}"),
        }),
        // Progress, FileDone, FileFailed and Finished only ever come from a receiver. Ignoring
        // them let a sender write them for ever; it broke the protocol, so the transfer ends
        // here like for any other violation.
        Ok(Some(other)) => FromSender::End(TransferState::Failed {
            reason: format!(
                "sender misbehaved: it sent {}, which only a receiver sends",
                other.name()
            ),
        }),
        Ok(None) => FromSender::Closed,
        Err(StreamError::Peer(Code::Cancelled)) => {
            FromSender::End(TransferState::Cancelled { by: Side::Peer })
        }
        Err(e @ (StreamError::Connection(_) | StreamError::Io(_))) => {
            FromSender::End(TransferState::Interrupted {
                reason: format!("connection lost: {e}"),
            })
        }
        Err(e) => FromSender::End(TransferState::Failed {
            reason: format!("sender misbehaved: {e}"),
        }),
    }
}

/// Whether a reception that ends in `state` removes its partial files: one that ends for good
/// does; an interrupted one keeps them for its resume.
pub(super) fn removes_partials(state: &TransferState) -> bool {
    matches!(
        state,
        TransferState::Failed { .. } | TransferState::Cancelled { .. }
    )
}

// The sender: the answer, the plan, the receiver's reports.

/// How one attempt at a transfer ended: for good, or interrupted (try again when the peer is
/// back).
#[derive(Debug, PartialEq)]
pub(super) enum Attempt {
    Final(TransferState),
    Interrupted(String),
}

/// The receiver's answer to an offer (or why none came): the starts it accepted, or how the
/// attempt ends.
pub(super) fn answered(
    answer: Result<Answer, StreamError>,
    resume: bool,
) -> Result<Starts, Attempt> {
    match answer {
        Ok(Answer::Accepted { starts }) => Ok(starts),
        // A busy receiver may still hold the previous run of this transfer: try again later.
        Ok(Answer::Rejected(Refusal::Busy)) if resume => {
            Err(Attempt::Interrupted("the receiver is busy".into()))
        }
        Ok(Answer::Rejected(r)) => Err(Attempt::Final(TransferState::Rejected {
            reason: r.to_string(),
        })),
        // A resume unanswered (a receiver that is stuck, or a connection that only looks
        // alive) is tried again; it was ended for good as "rejected", which nobody had done.
        Err(StreamError::Timeout(_)) if resume => Err(Attempt::Interrupted(
            "the receiver did not answer the resume; trying again".into(),
        )),
        Err(StreamError::Timeout(_)) => Err(Attempt::Final(TransferState::Rejected {
            reason: "no answer in time".into(),
        })),
        Err(e @ (StreamError::Connection(_) | StreamError::Io(_))) => {
            Err(Attempt::Interrupted(format!("connection lost: {e}")))
        }
        Err(e) => Err(Attempt::Final(TransferState::Failed {
            reason: format!("receiver misbehaved: {e}"),
        })),
    }
}

/// What the sender sends for an accepted plan, and what the receiver holds already.
#[derive(Debug)]
pub(super) struct Sending {
    pub jobs: Vec<FileJob>,
    pub resumed: u64,
    pub already: usize,
}

/// The receiver's `starts` checked against the offer: one per entry and, for a file, within
/// its size. Else why the sender gives up (and tells the receiver).
pub(super) fn sending(
    m: &Manifest,
    sources: &[PathBuf],
    starts: &Starts,
) -> Result<Sending, &'static str> {
    if starts.len() != m.entries.len() {
        return Err("the receiver answered with a plan that does not fit");
    }
    let mut out = Sending {
        jobs: vec![],
        resumed: 0,
        already: 0,
    };
    for ((i, e), start) in m.entries.iter().enumerate().zip(starts) {
        if e.kind != EntryKind::File {
            continue;
        }
        match (start, sources.get(i)) {
            (Some(offset), Some(source)) if *offset <= e.size => {
                out.resumed += offset;
                out.jobs.push(FileJob {
                    id: i as u32,
                    source: source.clone(),
                    offset: *offset,
                    size: e.size,
                    mtime: e.mtime,
                });
            }
            (Some(_), _) => return Err("the receiver asked for a bad offset"),
            (None, _) => {
                out.resumed += e.size;
                out.already += 1;
            }
        }
    }
    Ok(out)
}

/// Whether the receiver's report that `entry` failed is listed: once per file over every
/// attempt since the last resume (`listed`), never for an entry that is no file. Every report
/// was listed, so a receiver repeating one grew the list without end: 27,648 reports in 3 s
/// made "27648 of 1 files failed" and 1 GiB of events.
pub(super) fn lists_failure(m: &Manifest, listed: &mut HashSet<u32>, entry: u32) -> bool {
    let is_file = m
        .entries
        .get(entry as usize)
        .is_some_and(|e| e.kind == EntryKind::File);
    is_file && listed.insert(entry)
}

/// A receiver's control message (or the end of its control stream) to the sender, once data
/// flows.
#[derive(Debug, PartialEq)]
pub(super) enum FromReceiver {
    Progress {
        bytes: u64,
        files: u32,
    },
    Failed {
        entry: u32,
        reason: String,
    },
    /// Its pause (true) or resume.
    Pause(bool),
    /// Every file is in: done, or failed if any file failed.
    Finished,
    End(Attempt),
    /// Nothing to do (a file done: progress says so).
    Nothing,
}

pub(super) fn from_receiver(msg: Result<Option<Control>, StreamError>) -> FromReceiver {
    match msg {
        Ok(Some(Control::Progress { bytes, files })) => FromReceiver::Progress { bytes, files },
        Ok(Some(Control::FileDone { .. })) => FromReceiver::Nothing,
        Ok(Some(Control::FileFailed { id, reason })) => FromReceiver::Failed { entry: id, reason },
        Ok(Some(Control::Pause)) => FromReceiver::Pause(true),
        Ok(Some(Control::Resume)) => FromReceiver::Pause(false),
        Ok(Some(Control::Finished)) => FromReceiver::Finished,
        Ok(Some(Control::Abort { reason })) => {
            FromReceiver::End(Attempt::Final(TransferState::Failed { reason }))
        }
        Ok(None) => FromReceiver::End(Attempt::Interrupted(
            "the receiver closed the transfer".into(),
        )),
        Err(StreamError::Peer(Code::Cancelled)) => {
            FromReceiver::End(Attempt::Final(TransferState::Cancelled { by: Side::Peer }))
        }
        Err(e @ (StreamError::Connection(_) | StreamError::Io(_))) => {
            FromReceiver::End(Attempt::Interrupted(format!("connection lost: {e}")))
        }
        Err(e) => FromReceiver::End(Attempt::Final(TransferState::Failed {
            reason: format!("receiver misbehaved: {e}"),
        })),
    }
}

// Either side: states.

/// How a transfer whose every file was sent or received ends: done, or failed if any did.
pub(super) fn completed(failed: usize, files: usize) -> TransferState {
    if failed == 0 {
        TransferState::Done
    } else {
        TransferState::Failed {
            reason: format!("{failed} of {files} files failed"),
        }
    }
}

/// Applies a pause (or its end) to a transfer's state.
pub(super) fn apply_pause(info: &mut TransferInfo, pause: bool, by: Side) {
    if pause {
        info.state = TransferState::Paused { by };
    } else if matches!(info.state, TransferState::Paused { .. }) {
        info.state = TransferState::Transferring;
    }
}

/// The reason stored with a transfer that ends in `state`.
pub(super) fn stored_reason(state: &TransferState) -> Option<String> {
    match state {
        TransferState::Interrupted { reason }
        | TransferState::Failed { reason }
        | TransferState::Rejected { reason } => Some(reason.clone()),
        TransferState::Cancelled { by: Side::Local } => Some("cancelled here".into()),
        TransferState::Cancelled { by: Side::Peer } => Some("cancelled by the peer".into()),
        _ => None,
    }
}

/// A stored state and reason as front ends show them: anything that was running when its
/// node stopped is interrupted.
pub(super) fn stored_state(state: &str, reason: String) -> TransferState {
    match state {
        "done" => TransferState::Done,
        "failed" => TransferState::Failed { reason },
        "rejected" => TransferState::Rejected { reason },
        "cancelled" => TransferState::Cancelled {
            by: if reason.contains("peer") {
                Side::Peer
            } else {
                Side::Local
            },
        },
        _ => TransferState::Interrupted {
            reason: if reason.is_empty() {
                "the node stopped".into()
            } else {
                reason
            },
        },
    }
}

/// Whether the user may resume a stored transfer that is not live; else why not.
pub(super) fn resumable(direction: Direction, state: &str) -> Result<(), &'static str> {
    match (direction, state) {
        (Direction::Send, "waiting" | "transferring" | "paused" | "interrupted") => Ok(()),
        // The receiver cannot pull; the sender resumes when it sees us again.
        (Direction::Receive, "interrupted" | "transferring" | "paused") => {
            Err("waiting for the sender to come back")
        }
        (_, "done") => Err("done"),
        (_, "failed") => Err("failed"),
        (_, "rejected") => Err("rejected"),
        (_, "cancelled") => Err("cancelled"),
        _ => Err("not resumable"),
    }
}

/// What a starting node does with a stored transfer its previous run left unfinished.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AtStart {
    /// A reception whose every file was verified: place what is left and record it done.
    Complete,
    /// A send: offer it again as a resume.
    Resend,
    Leave,
}

/// `files` is (files, files done, files failed); `resume` the node's setting to resume sends
/// at start.
pub(super) fn at_start(
    direction: Direction,
    state: &str,
    (files, files_done, failed): (usize, usize, usize),
    resume: bool,
) -> AtStart {
    if !matches!(state, "waiting" | "transferring" | "paused" | "interrupted") {
        return AtStart::Leave;
    }
    match direction {
        Direction::Receive if files > 0 && files_done == files && failed == 0 => AtStart::Complete,
        Direction::Send if resume => AtStart::Resend,
        _ => AtStart::Leave,
    }
}

// The history: which finished transfers are kept.

/// Which finished transfers the history setting drops at `now` (unix seconds), given when each
/// ended, newest first as listings order them: those past the newest `count`, and those that
/// ended more than `days` days ago. Returns their places in `ended`. (Only finished transfers
/// are given: an unfinished one is never dropped. A clock set back, an end in the future,
/// keeps a transfer until its count comes.)
pub(super) fn pruned(ended: &[i64], history: History, now: i64) -> Vec<usize> {
    let History { days, count } = history.clamped();
    let oldest = now.saturating_sub(i64::from(days) * 86_400);
    ended
        .iter()
        .enumerate()
        .filter(|(i, end)| *i >= count as usize || **end < oldest)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_block::Entry;
    use ferry_p2p::Identity;

    fn entry(path: &[&str], kind: EntryKind, size: u64) -> Entry {
        Entry {
            path: path.iter().map(|s| s.to_string()).collect(),
            kind,
            size,
            mode: 0o644,
            mtime: 0,
        }
    }

    /// A folder with two files, and a loose file: entries 0 (dir), 1, 2, 3.
    fn manifest() -> Manifest {
        Manifest {
            entries: vec![
                entry(&["album"], EntryKind::Dir, 0),
                entry(&["album", "a.jpg"], EntryKind::File, 100),
                entry(&["album", "b.jpg"], EntryKind::File, 200),
                entry(&["notes.txt"], EntryKind::File, 5),
            ],
        }
    }

    fn peer() -> PeerId {
        Identity::generate().unwrap().peer_id()
    }

    fn offer(m: &Manifest, resume: bool) -> Offer {
        Offer {
            transfer: TransferId([7; 16]),
            manifest: m.clone(),
            resume,
        }
    }

    #[test]
    fn an_id_stored_here_is_taken_unless_its_own_sender_resumes_it() {
        let (beta, mallory) = (peer(), peer());
        let (m, other) = (
            manifest(),
            Manifest {
                entries: vec![entry(&["x.txt"], EntryKind::File, 5)],
            },
        );
        let stored = |peer, direction, manifest, state| {
            Some(Stored {
                peer,
                direction,
                manifest,
                state,
            })
        };
        assert_eq!(admit(None, mallory, &offer(&m, false)), Ok(Admission::New));
        // A resume of an id not stored here continues as new.
        assert_eq!(admit(None, mallory, &offer(&m, true)), Ok(Admission::New));
        let beta_row = || stored(beta, Direction::Receive, &m, "transferring");
        assert_eq!(
            admit(beta_row(), beta, &offer(&m, true)),
            Ok(Admission::Resume)
        );
        // (hostile.rs, moved here) beta itself reuses its live id for a second offer: taken,
        // with its manifest or another.
        assert_eq!(admit(beta_row(), beta, &offer(&m, false)), Err(taken()));
        assert_eq!(admit(beta_row(), beta, &offer(&other, false)), Err(taken()));
        // Another peer, another manifest: taken, resume or not.
        assert_eq!(admit(beta_row(), mallory, &offer(&m, true)), Err(taken()));
        assert_eq!(admit(beta_row(), beta, &offer(&other, true)), Err(taken()));
        // (hostile.rs, moved here) mallory resumes X after it is done: taken, and the answer
        // says no more than before.
        let done = stored(beta, Direction::Receive, &m, "done");
        assert_eq!(admit(done, mallory, &offer(&m, true)), Err(taken()));
        // An id this node sends under is never a reception's.
        let ours = stored(mallory, Direction::Send, &m, "done");
        assert_eq!(admit(ours, mallory, &offer(&m, true)), Err(taken()));
        // Its own sender resuming a transfer that ended for good is declined.
        for state in ["cancelled", "rejected", "failed"] {
            let row = stored(beta, Direction::Receive, &m, state);
            assert_eq!(admit(row, beta, &offer(&m, true)), Err(Refusal::Declined));
        }
        assert!(matches!(taken(), Refusal::Invalid(why) if why.contains("taken")));
    }

    #[test]
    fn an_id_being_offered_is_busy_only_for_its_own_sender_resuming() {
        let (beta, mallory) = (peer(), peer());
        assert_eq!(claimed(beta, beta, true), Refusal::Busy);
        assert_eq!(claimed(beta, beta, false), taken());
        assert_eq!(claimed(beta, mallory, true), taken());
        assert_eq!(claimed(beta, mallory, false), taken());
    }

    #[test]
    fn offers_are_bounded_by_live_transfers_and_open_prompts() {
        assert_eq!(room(0, false), Ok(()));
        assert_eq!(room(MAX_INCOMING - 1, false), Ok(()));
        assert_eq!(room(MAX_INCOMING, false), Err(Refusal::Busy));
        assert_eq!(room(0, true), Err(Refusal::Busy));
        assert!(prompt_room(0, false));
        assert!(prompt_room(MAX_PROMPTS - 1, false));
        assert!(!prompt_room(MAX_PROMPTS, false));
        assert!(!prompt_room(1, true));
        let (a, b) = (peer(), peer());
        assert!(accepts_unasked(&AcceptPolicy::Everyone, &a));
        assert!(!accepts_unasked(&AcceptPolicy::Ask, &a));
        assert!(accepts_unasked(&AcceptPolicy::From(vec![a]), &a));
        assert!(!accepts_unasked(&AcceptPolicy::From(vec![a]), &b));
    }

    #[test]
    fn a_resume_skips_done_files_and_continues_partial_ones() {
        let m = manifest();
        assert_eq!(fresh_starts(&m), [None, Some(0), Some(0), Some(0)]);
        let done = HashSet::from([3]);
        // a.jpg has 40 bytes, b.jpg a temp file longer than the file (cut to its size).
        let have = |e| match e {
            1 => 40,
            2 => 999,
            _ => 0,
        };
        assert_eq!(
            resume_starts(&m, &done, have),
            [None, Some(40), Some(200), None]
        );
        assert_eq!(resume_starts(&m, &HashSet::new(), |_| 0), fresh_starts(&m));
    }

    #[test]
    fn the_receiver_expects_what_it_asked_for() {
        let m = manifest();
        let id = TransferId([1; 16]);
        let dest = Path::new("/down");
        let layout: Vec<PathBuf> = ["album", "album/a.jpg", "album/b (1).jpg", "notes.txt"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let e = expected(&m, &layout, dest, &id, &vec![None, Some(40), Some(0), None]);
        assert_eq!((e.resumed, e.already), (40 + 5, 1));
        assert_eq!(e.plan.len(), 2);
        let b = &e.plan[&2];
        assert_eq!(b.dest, dest.join("album/b (1).jpg"));
        assert_eq!(b.temp, dest.join(format!(".ferry-{}-2.part", id.hex())));
        assert_eq!((b.offset, b.size), (0, 200));
        assert_eq!(e.plan[&1].offset, 40);
    }

    #[test]
    fn the_sender_refuses_a_plan_that_does_not_fit_its_offer() {
        let m = manifest();
        let sources: Vec<PathBuf> = (0..4).map(|i| PathBuf::from(format!("/src/{i}"))).collect();
        let s = sending(&m, &sources, &vec![None, Some(0), Some(150), None]).unwrap();
        assert_eq!((s.resumed, s.already), (150 + 5, 1));
        let ids: Vec<_> = s.jobs.iter().map(|j| (j.id, j.offset)).collect();
        assert_eq!(ids, [(1, 0), (2, 150)]);
        assert_eq!(s.jobs[1].source, PathBuf::from("/src/2"));
        let short = sending(&m, &sources, &vec![None, Some(0)]);
        assert_eq!(
            short.unwrap_err(),
            "the receiver answered with a plan that does not fit"
        );
        let past = sending(&m, &sources, &vec![None, Some(101), None, None]);
        assert_eq!(past.unwrap_err(), "the receiver asked for a bad offset");
        // A start for a folder asks for nothing.
        assert!(sending(&m, &sources, &vec![Some(9), None, None, None]).is_ok());
    }

    #[test]
    fn an_answer_decides_the_attempt() {
        let starts = vec![None, Some(0)];
        let accepted = Ok(Answer::Accepted {
            starts: starts.clone(),
        });
        assert_eq!(answered(accepted, false), Ok(starts));
        let busy = || Ok(Answer::Rejected(Refusal::Busy));
        assert_eq!(
            answered(busy(), true),
            Err(Attempt::Interrupted("the receiver is busy".into()))
        );
        assert!(matches!(
            answered(busy(), false),
            Err(Attempt::Final(TransferState::Rejected { .. }))
        ));
        let declined = answered(Ok(Answer::Rejected(Refusal::Declined)), true);
        assert_eq!(
            declined,
            Err(Attempt::Final(TransferState::Rejected {
                reason: "the receiver declined".into()
            }))
        );
        let lost = answered(Err(StreamError::Truncated), false);
        assert!(
            matches!(lost, Err(Attempt::Final(TransferState::Failed { reason })) if reason.starts_with("receiver misbehaved"))
        );
    }

    /// (hostile.rs, moved here: an_unanswered_resume_is_tried_again_not_given_up.) A resume
    /// that gets no answer is interrupted and tried again, not rejected for good; a fresh
    /// offer without an answer is rejected.
    #[test]
    fn an_unanswered_resume_is_tried_again_not_given_up() {
        let unanswered = || Err(StreamError::Timeout("an answer"));
        let resume = answered(unanswered(), true);
        assert!(
            matches!(&resume, Err(Attempt::Interrupted(reason)) if reason.contains("resume")),
            "{resume:?}"
        );
        assert_eq!(
            answered(unanswered(), false),
            Err(Attempt::Final(TransferState::Rejected {
                reason: "no answer in time".into()
            }))
        );
    }

    #[test]
    fn a_failure_is_listed_once_per_file() {
        let m = manifest();
        let mut listed = HashSet::new();
        assert!(lists_failure(&m, &mut listed, 1));
        // The same file again, a folder, an id outside the manifest.
        for entry in [1, 0, 4, u32::MAX] {
            assert!(!lists_failure(&m, &mut listed, entry));
        }
        assert!(lists_failure(&m, &mut listed, 3));
        assert_eq!(listed.len(), 2);
    }

    #[test]
    fn what_each_side_hears_decides_its_next_state() {
        use FromReceiver as R;
        use FromSender as S;
        assert_eq!(from_sender(Ok(Some(Control::Pause))), S::Pause(true));
        assert_eq!(from_sender(Ok(Some(Control::Resume))), S::Pause(false));
        assert_eq!(from_sender(Ok(None)), S::Closed);
        let abort = from_sender(Ok(Some(Control::Abort {
            reason: "gone".into(),
        })));
        assert_eq!(
            abort,
            S::End(TransferState::Failed {
                reason: "the sender gave up: gone".into()
            })
        );
        // What only a receiver sends ends the transfer.
        let progress = from_sender(Ok(Some(Control::Progress { bytes: 1, files: 0 })));
        assert!(
            matches!(progress, S::End(TransferState::Failed { reason }) if reason.contains("only a receiver sends"))
        );
        assert_eq!(
            from_sender(Err(StreamError::Peer(Code::Cancelled))),
            S::End(TransferState::Cancelled { by: Side::Peer })
        );
        assert_eq!(
            from_receiver(Ok(Some(Control::FileDone { id: 1 }))),
            R::Nothing
        );
        assert_eq!(from_receiver(Ok(Some(Control::Finished))), R::Finished);
        assert_eq!(
            from_receiver(Ok(None)),
            R::End(Attempt::Interrupted(
                "the receiver closed the transfer".into()
            ))
        );
        assert_eq!(
            from_receiver(Err(StreamError::Peer(Code::Cancelled))),
            R::End(Attempt::Final(TransferState::Cancelled { by: Side::Peer }))
        );
        // Ending for good removes partial files; an interruption keeps them for the resume.
        assert!(removes_partials(&TransferState::Failed {
            reason: String::new()
        }));
        assert!(removes_partials(&TransferState::Cancelled {
            by: Side::Local
        }));
        assert!(!removes_partials(&TransferState::Interrupted {
            reason: String::new()
        }));
    }

    #[test]
    fn states_follow_from_outcomes_and_what_is_stored() {
        assert_eq!(completed(0, 3), TransferState::Done);
        assert_eq!(
            completed(1, 3),
            TransferState::Failed {
                reason: "1 of 3 files failed".into()
            }
        );
        for state in [
            TransferState::Failed {
                reason: "disk".into(),
            },
            TransferState::Rejected {
                reason: "the receiver declined".into(),
            },
            TransferState::Cancelled { by: Side::Local },
            TransferState::Cancelled { by: Side::Peer },
            TransferState::Done,
        ] {
            let reason = stored_reason(&state).unwrap_or_default();
            assert_eq!(stored_state(state.name(), reason), state);
        }
        assert_eq!(
            stored_state("transferring", String::new()),
            TransferState::Interrupted {
                reason: "the node stopped".into()
            }
        );
        assert_eq!(resumable(Direction::Send, "interrupted"), Ok(()));
        assert_eq!(
            resumable(Direction::Receive, "interrupted"),
            Err("waiting for the sender to come back")
        );
        assert_eq!(resumable(Direction::Send, "done"), Err("done"));
        assert_eq!(
            resumable(Direction::Receive, "waiting"),
            Err("not resumable")
        );
        assert_eq!(
            at_start(Direction::Receive, "transferring", (3, 3, 0), false),
            AtStart::Complete
        );
        assert_eq!(
            at_start(Direction::Receive, "transferring", (3, 2, 0), true),
            AtStart::Leave
        );
        assert_eq!(
            at_start(Direction::Send, "interrupted", (3, 0, 0), true),
            AtStart::Resend
        );
        assert_eq!(
            at_start(Direction::Send, "interrupted", (3, 0, 0), false),
            AtStart::Leave
        );
        assert_eq!(
            at_start(Direction::Send, "done", (3, 3, 0), true),
            AtStart::Leave
        );
    }

    #[test]
    fn a_localsend_device_is_accepted_unasked_only_from_everyone() {
        let someone = ferry_p2p::Identity::generate().unwrap().peer_id();
        assert!(accepts_localsend_unasked(&AcceptPolicy::Everyone));
        assert!(!accepts_localsend_unasked(&AcceptPolicy::Ask));
        // Even a list that holds the very id its fingerprint maps to.
        assert!(!accepts_localsend_unasked(&AcceptPolicy::From(vec![
            someone
        ])));
    }

    #[test]
    fn the_history_keeps_the_newest_count_none_older_than_its_days() {
        let day = 86_400;
        let now = 100 * day;
        let h = |days, count| History { days, count };
        // Newest first: ended 0, 1, 2, 40 days ago, then one whose end is in the future.
        let ended = [now, now - day, now - 2 * day, now - 40 * day, now + day];
        assert_eq!(pruned(&ended, h(30, 1000), now), vec![3]);
        assert_eq!(pruned(&ended, h(30, 2), now), vec![2, 3, 4]);
        assert_eq!(pruned(&ended, h(365, 1000), now), Vec::<usize>::new());
        // Exactly `days` old is still kept; a second more is not.
        assert_eq!(
            pruned(&[now - 30 * day], h(30, 10), now),
            Vec::<usize>::new()
        );
        assert_eq!(pruned(&[now - 30 * day - 1], h(30, 10), now), vec![0]);
        // Zeroes mean one: the newest transfer of the last day stays.
        assert_eq!(pruned(&ended, h(0, 0), now), vec![1, 2, 3, 4]);
        assert!(pruned(&[], h(1, 1), now).is_empty());
    }
}
