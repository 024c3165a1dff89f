//! The receiving flow: check the offer, ask (or recognise a resume), check space, lay the
//! files out, then receive the data stream and report progress and every file's outcome.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_block::names::Os;
use ferry_block::place;
use ferry_block::record::RecordError;
use ferry_block::recv::{receive_files, Expect, FileOutcome, Journal, RecvError};
use ferry_block::EntryKind;
use ferry_p2p::router::{BoxFuture, Incoming, Protocol};
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::PeerId;
use ferry_p2p::{Code, StreamError};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::commands::Cancel;
use super::store::{Direction, FileStatus, SavedLayout, TransferRow};
use super::wire::{
    Answer, Control, DataStart, FrameReader, Offer, Refusal, Starts, TransferId, CONTROL_ID,
    DATA_ID, MAX_ANSWER, MAX_CONTROL, MAX_OFFER, MAX_REASON, VERSION,
};
use super::{
    apply_pause, control_for, lock, preview, unix_now, AcceptPolicy, Cmd, Decision, FailedFile,
    Prompt, PromptOutcome, Shared, Side, TransferInfo, TransferState, MAX_PROMPTS,
};
use crate::event::Event;

/// How long the sender has to send its offer, and to open the data stream after the answer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);
const DATA_TIMEOUT: Duration = Duration::from_secs(30);
/// Incoming transfers running at once; more offers are answered `Busy`.
const MAX_INCOMING: usize = 16;
/// Offers decoded at once (each may carry a manifest of up to 48 MiB).
pub(super) const OFFER_SLOTS: usize = 4;

/// What the control flow hands to the data stream's handler.
pub(super) struct DataJob {
    plan: HashMap<u32, Expect>,
    journal: Journal,
    outcomes: mpsc::Sender<FileOutcome>,
    received: Arc<AtomicU64>,
    cancel: watch::Receiver<bool>,
    done: oneshot::Sender<Result<(), RecvError>>,
}

pub(super) struct ControlProtocol(pub Arc<Shared>);
pub(super) struct DataProtocol(pub Arc<Shared>);

impl Protocol for ControlProtocol {
    fn id(&self) -> u16 {
        CONTROL_ID
    }
    fn versions(&self) -> RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(handle_offer(self.0.clone(), s))
    }
}

impl Protocol for DataProtocol {
    fn id(&self) -> u16 {
        DATA_ID
    }
    fn versions(&self) -> RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            let start: DataStart =
                expect_frame(&mut s.recv, MAX_CONTROL, OFFER_TIMEOUT, "data start").await?;
            // Keyed by the *proven* peer: nobody else can feed another peer's transfer.
            let job = lock(&self.0.data_jobs).remove(&(s.peer, start.transfer));
            let Some(job) = job else {
                return Err(StreamError::Protocol(
                    "data for no accepted transfer".into(),
                ));
            };
            let r = receive_files(
                &mut s.recv,
                &job.plan,
                Os::current(),
                job.journal,
                job.outcomes,
                &job.received,
                job.cancel,
            )
            .await;
            let code = match &r {
                Ok(()) => None,
                Err(RecvError::Disk { .. }) => Some((Code::Refused, "disk")),
                Err(RecvError::Stopped) => Some((Code::Cancelled, "stopped")),
                // The stream was reset or its connection lost: not the peer's data at fault.
                Err(RecvError::Record(RecordError::Io(_))) => {
                    Some((Code::Cancelled, "stream reset or connection lost"))
                }
                Err(_) => Some((Code::ProtocolError, "bad data")),
            };
            let _ = job.done.send(r);
            match code {
                None => Ok(()),
                Some((code, why)) => Err(StreamError::Local(code, why)),
            }
        })
    }
}

/// Records how entry `entry` of `row` ended, with its size and name for listings.
fn record_file(shared: &Shared, row: &TransferRow, entry: u32, status: &FileStatus) {
    let size = row
        .manifest
        .entries
        .get(entry as usize)
        .map_or(0, |e| e.size);
    let name = row.manifest.display_path(entry);
    if let Err(e) = shared.store.set_file(&row.id, entry, size, &name, status) {
        tracing::warn!(error = %e, "could not record a file's end");
    }
}

fn temp_path(dest: &Path, id: &TransferId, entry: u32) -> PathBuf {
    dest.join(format!(".ferry-{}-{entry}.part", id.hex()))
}

/// Removes the partial files of a transfer (cancelled, or failed for good).
pub(super) fn remove_temps(row: &TransferRow) {
    if let Some(dest) = &row.dest {
        for (i, e) in row.manifest.entries.iter().enumerate() {
            if e.kind == EntryKind::File {
                let _ = std::fs::remove_file(temp_path(dest, &row.id, i as u32));
            }
        }
    }
}

/// Interrupts a live run of `id` (a stale one, about to be replaced by a resume) and waits a
/// moment for it to wind down.
async fn stop_previous_run(shared: &Shared, id: &TransferId) {
    let cmds = lock(&shared.live).get(id).map(|l| l.cmds.clone());
    if let Some(c) = cmds {
        let _ = c.send(Cmd::Interrupt).await;
        for _ in 0..100 {
            if !lock(&shared.live).contains_key(id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How long one message to the sender may wait for room in its stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a run that ends waits for its data handler to stop writing.
const WRITER_WAIT: Duration = Duration::from_secs(30);

/// Writes to the sender, giving up after [`WRITE_TIMEOUT`]. A sender that stops reading its
/// control stream fills QUIC's flow-control window for it (1.25 MB: about 2,200 FileFailed with
/// long reasons), and a write without a bound then held the transfer's loop for good: nothing
/// more was received or reported, and the user's cancel was never read.
async fn tell<T: serde::Serialize>(
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

async fn reject(s: &mut Incoming, r: Refusal) -> Result<(), StreamError> {
    tracing::info!(peer = %s.peer.short(), reason = %r, "offer refused");
    tell(s, &Answer::Rejected(r), MAX_CONTROL).await
}

/// A peer's turn to have an offer read and decoded; given back (and forgotten once nobody
/// waits for it) on drop.
struct Turn<'a> {
    shared: &'a Shared,
    peer: PeerId,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = lock(&self.shared.offer_turns);
        self.permit = None;
        // Only the map holds it: no offer of this peer waits or runs. (Every other holder is
        // a Turn that checks again when it drops.)
        if turns
            .get(&self.peer)
            .is_some_and(|t| Arc::strong_count(t) == 1)
        {
            turns.remove(&self.peer);
        }
    }
}

/// Waits (within [`OFFER_TIMEOUT`] in all) for this peer's turn, then for one of the node's
/// offer slots. Offers are decoded a few at a time (each may hold a large manifest) and the
/// others wait, their streams bounded by the connection's stream limit. The slot is given back
/// once the offer is decoded: it bounds decoding, not how many transfers run.
///
/// The peer's turn comes first because a slot is held while the offer is read, for up to
/// [`OFFER_TIMEOUT`]: with only the slots, one peer that opened offers and stalled them kept
/// all four taken, one wave after another, and every other peer's offer was answered busy.
/// Now a peer holds one slot at most, and the slots' queue is fair between peers.
async fn offer_slot(shared: &Shared, peer: PeerId) -> Option<(Turn<'_>, OwnedSemaphorePermit)> {
    let turn = lock(&shared.offer_turns)
        .entry(peer)
        .or_insert_with(|| Arc::new(Semaphore::new(1)))
        .clone();
    let mut mine = Turn {
        shared,
        peer,
        permit: None,
    };
    let slot = tokio::time::timeout(OFFER_TIMEOUT, async {
        mine.permit = Some(turn.acquire_owned().await.ok()?);
        shared.offer_slots.clone().acquire_owned().await.ok()
    })
    .await;
    match slot {
        Ok(Some(slot)) => Some((mine, slot)),
        _ => None,
    }
}

/// An offer's hold on its transfer id while it is decided, prepared and run, so that no other
/// offer (another peer's, or the same one again) can take the id meanwhile.
struct Claim {
    shared: Arc<Shared>,
    id: TransferId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.shared.claims).remove(&self.id);
    }
}

/// Claims `id` for `peer`'s offer, or says which peer's offer holds it.
fn claim(shared: &Arc<Shared>, id: TransferId, peer: PeerId) -> Result<Claim, PeerId> {
    match lock(&shared.claims).entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => Err(*e.get()),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(peer);
            Ok(Claim {
                shared: shared.clone(),
                id,
            })
        }
    }
}

async fn handle_offer(shared: Arc<Shared>, s: &mut Incoming) -> Result<(), StreamError> {
    let Some((turn, slot)) = offer_slot(&shared, s.peer).await else {
        return reject(s, Refusal::Busy).await;
    };
    let mut reader = FrameReader::new(MAX_OFFER);
    let body = match tokio::time::timeout(OFFER_TIMEOUT, reader.body(&mut s.recv)).await {
        Err(_) => return Err(StreamError::Timeout("an offer")),
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => return Err(StreamError::Truncated),
        Ok(Err(e)) => return Err(e),
    };
    // Not on a runtime thread: a manifest within every limit (250,000 entries, 64 levels deep)
    // took 1.5 s to decode in a release build, a stall of every connection this node serves.
    let decoded = tokio::task::spawn_blocking(move || {
        let offer: Offer = ferry_p2p::wire::decode(&body)?;
        let valid = offer.manifest.validate();
        Ok::<_, StreamError>((offer, valid))
    })
    .await;
    drop((slot, turn));
    let (offer, valid) = match decoded {
        Ok(r) => r?,
        Err(_) => {
            return Err(StreamError::Local(
                Code::Internal,
                "decoding the offer failed",
            ))
        }
    };
    if let Err(e) = valid {
        return reject(s, Refusal::Invalid(e.to_string())).await;
    }
    let known = shared.store.get(&offer.transfer).ok().flatten();
    let taken = || Refusal::Invalid("that transfer id is taken".into());
    // The id belongs to another transfer (ours, or another peer's): never let it replace that.
    // Only a resume may name a known id: a fresh offer reusing one (its own sender's live or
    // finished transfer, too) is a second transfer under the first one's name.
    if let Some(row) = &known {
        if row.peer != s.peer
            || row.direction != Direction::Receive
            || row.manifest != offer.manifest
            || !offer.resume
        {
            return reject(s, taken()).await;
        }
    }
    if offer.resume {
        if let Some(row) = known {
            return match row.state.as_str() {
                "cancelled" | "rejected" | "failed" => reject(s, Refusal::Declined).await,
                _ => {
                    // The previous run may not have noticed its connection is gone yet.
                    stop_previous_run(&shared, &row.id).await;
                    if lock(&shared.live).contains_key(&row.id) {
                        return reject(s, Refusal::Busy).await;
                    }
                    let starts = resume_starts(&shared, &row);
                    run(shared, s, row, starts).await
                }
            };
        }
    }
    // Not stored yet, but another offer with this id may be prompting or preparing right now:
    // the prompts were keyed by id, so a second peer's offer replaced the first one's prompt
    // (whose offer then failed as timed out, and whose answer went to the second), and two
    // accepted offers would each store their row under the id, the later one winning.
    let _claim = match claim(&shared, offer.transfer, s.peer) {
        Ok(c) => c,
        // The same sender resuming an offer it just gave up on: try again shortly.
        Err(holder) if holder == s.peer && offer.resume => return reject(s, Refusal::Busy).await,
        Err(_) => return reject(s, taken()).await,
    };
    let receiving = lock(&shared.live)
        .values()
        .filter(|l| l.info.direction == Direction::Receive)
        .count();
    if lock(&shared.live).contains_key(&offer.transfer) || receiving >= MAX_INCOMING {
        return reject(s, Refusal::Busy).await;
    }
    let decision = match decide(&shared, s, &offer).await? {
        Some(d) => d,
        None => return Ok(()),
    };
    let Decision::Accept { dest } = decision else {
        return reject(s, Refusal::Declined).await;
    };
    let dest = dest.unwrap_or_else(|| lock(&shared.cfg).dest.clone());
    let manifest = offer.manifest;
    let prepared = {
        let dest = dest.clone();
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || prepare(&dest, &manifest)).await
    };
    let layout = match prepared {
        Ok(Ok(l)) => l,
        Ok(Err(r)) => return reject(s, r).await,
        Err(e) => return reject(s, Refusal::Destination(e.to_string())).await,
    };
    let peer_name = shared
        .p2p()
        .and_then(|p| p.peer(&s.peer))
        .map(|p| p.name)
        .unwrap_or_default();
    let row = TransferRow {
        id: offer.transfer,
        direction: Direction::Receive,
        peer: s.peer,
        peer_name,
        peer_addr: Some(s.conn.remote_address().to_string()),
        state: "transferring".into(),
        reason: None,
        dest: Some(dest),
        manifest,
        sources: vec![],
        layout,
        created: unix_now(),
    };
    if let Err(e) = shared.store.put(&row) {
        return reject(
            s,
            Refusal::Destination(format!("cannot record the transfer: {e}")),
        )
        .await;
    }
    let starts = row
        .manifest
        .entries
        .iter()
        .map(|e| (e.kind == EntryKind::File).then_some(0))
        .collect();
    run(shared, s, row, starts).await
}

/// Free space, then the layout and the folders (empty ones included).
fn prepare(dest: &Path, manifest: &ferry_block::Manifest) -> Result<SavedLayout, Refusal> {
    std::fs::create_dir_all(dest).map_err(|e| Refusal::Destination(e.to_string()))?;
    let needed = manifest.total_bytes();
    let available = fs4::available_space(dest).map_err(|e| Refusal::Destination(e.to_string()))?;
    if needed > available {
        return Err(Refusal::NoSpace { needed, available });
    }
    let l = place::layout(manifest, Os::current(), |n| dest.join(n).exists())
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    for (e, p) in manifest.entries.iter().zip(&l.paths) {
        if e.kind == EntryKind::Dir {
            std::fs::create_dir_all(dest.join(p))
                .map_err(|e| Refusal::Destination(e.to_string()))?;
        }
    }
    Ok(SavedLayout {
        paths: l.paths,
        renamed: l.renamed,
    })
}

/// Places the files recorded as done whose temp file is still there: verified, but not yet
/// moved when the node stopped. Returns whether every such file is in place now.
pub(super) fn place_recovered(shared: &Shared, row: &TransferRow) -> bool {
    let dest = row.dest.clone().unwrap_or_default();
    let mut all = true;
    for (entry, status) in shared.store.files(&row.id).unwrap_or_default() {
        let temp = temp_path(&dest, &row.id, entry);
        if let (FileStatus::Done(wanted), true) = (status, temp.exists()) {
            // Linked into place just before the stop, only the temp name was left to remove.
            if place::same_file(&temp, &wanted) {
                let _ = std::fs::remove_file(&temp);
                continue;
            }
            match place::place(&temp, &wanted, Os::current()) {
                Ok(path) => {
                    record_file(shared, row, entry, &FileStatus::Done(path));
                }
                Err(e) => {
                    all = false;
                    tracing::warn!(error = %e, "could not place a recovered file");
                }
            }
        }
    }
    all
}

/// Where to start each entry of a resumed transfer: skip what is done, continue what has a
/// partial file (the whole-file hash re-checks its bytes), restart the rest.
fn resume_starts(shared: &Shared, row: &TransferRow) -> Starts {
    place_recovered(shared, row);
    let dest = row.dest.clone().unwrap_or_default();
    let done: std::collections::HashSet<u32> = shared
        .store
        .files(&row.id)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, s)| matches!(s, FileStatus::Done(_)))
        .map(|(i, _)| i)
        .collect();
    row.manifest
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| match e.kind {
            EntryKind::Dir => None,
            EntryKind::File if done.contains(&(i as u32)) => None,
            EntryKind::File => {
                let have =
                    std::fs::metadata(temp_path(&dest, &row.id, i as u32)).map_or(0, |m| m.len());
                Some(have.min(e.size))
            }
        })
        .collect()
}

/// Policy, or a prompt that the first answer (from any front end) settles. `None` when the
/// offer ended without an answer being sent (the sender withdrew).
async fn decide(
    shared: &Shared,
    s: &mut Incoming,
    offer: &Offer,
) -> Result<Option<Decision>, StreamError> {
    let (policy, timeout) = {
        let c = lock(&shared.cfg);
        (c.accept.clone(), c.prompt_timeout)
    };
    let auto = match &policy {
        AcceptPolicy::Everyone => true,
        AcceptPolicy::From(peers) => peers.contains(&s.peer),
        AcceptPolicy::Ask => false,
    };
    if auto {
        return Ok(Some(Decision::Accept { dest: None }));
    }
    let peer = shared.p2p().and_then(|p| p.peer(&s.peer));
    let prompt = Prompt {
        transfer: offer.transfer.hex(),
        peer: s.peer,
        peer_short: s.peer.short(),
        peer_name: peer.map(|p| p.name).unwrap_or_default(),
        files: offer.manifest.file_count(),
        bytes: offer.manifest.total_bytes(),
        first_names: offer.manifest.first_names(5),
        first_files: offer.manifest.first_nested_files(5),
        folders: offer.manifest.folder_count(),
        expires_in_ms: timeout.as_millis() as u64,
    };
    let (tx, rx) = oneshot::channel();
    let admitted = {
        let mut prompts = lock(&shared.prompts);
        let full =
            prompts.len() >= MAX_PROMPTS || prompts.values().any(|(_, p, _)| p.peer == s.peer);
        if !full {
            prompts.insert(
                offer.transfer,
                (std::time::Instant::now(), prompt.clone(), tx),
            );
        }
        !full
    };
    if !admitted {
        reject(s, Refusal::Busy).await?;
        return Ok(None);
    }
    shared.emit(Event::SpacedropPrompt { prompt });
    let mut probe = [0u8; 1];
    let outcome = tokio::select! {
        d = tokio::time::timeout(timeout, rx) => match d {
            Ok(Ok(d)) => Ok(d),
            _ => Err(PromptOutcome::TimedOut),
        },
        // Anything from the sender now (data, FIN, reset) means it gave up waiting.
        _ = s.recv.read(&mut probe) => Err(PromptOutcome::Withdrawn),
    };
    lock(&shared.prompts).remove(&offer.transfer);
    let resolved = |outcome| Event::PromptResolved {
        transfer: offer.transfer.hex(),
        outcome,
    };
    match outcome {
        Ok(d) => {
            shared.emit(resolved(if matches!(d, Decision::Accept { .. }) {
                PromptOutcome::Accepted
            } else {
                PromptOutcome::Rejected
            }));
            Ok(Some(d))
        }
        Err(PromptOutcome::TimedOut) => {
            shared.emit(resolved(PromptOutcome::TimedOut));
            reject(s, Refusal::TimedOut).await?;
            Ok(None)
        }
        Err(o) => {
            shared.emit(resolved(o));
            Ok(None)
        }
    }
}

/// Answers with `starts` and receives until the transfer ends one way or another.
async fn run(
    shared: Arc<Shared>,
    s: &mut Incoming,
    row: TransferRow,
    starts: Starts,
) -> Result<(), StreamError> {
    let id = row.id;
    let dest = row.dest.clone().unwrap_or_default();
    let (mut plan, mut resumed, mut already) = (HashMap::new(), 0u64, 0usize);
    for (i, e) in row.manifest.entries.iter().enumerate() {
        if e.kind != EntryKind::File {
            continue;
        }
        match starts[i] {
            Some(offset) => {
                resumed += offset;
                let local = row.layout.paths.get(i).cloned().unwrap_or_default();
                plan.insert(
                    i as u32,
                    Expect {
                        temp: temp_path(&dest, &id, i as u32),
                        dest: dest.join(local),
                        offset,
                        size: e.size,
                    },
                );
            }
            None => {
                resumed += e.size;
                already += 1;
            }
        }
    }
    let mut cmds = shared.register(TransferInfo {
        id: id.hex(),
        direction: Direction::Receive,
        peer: row.peer,
        peer_name: row.peer_name.clone(),
        state: TransferState::Transferring,
        files_total: row.manifest.file_count(),
        files_done: already,
        bytes_total: row.manifest.total_bytes(),
        bytes_done: resumed,
        bytes_resumed: resumed,
        speed_bps: 0.0,
        eta_secs: None,
        current: None,
        dest: Some(dest.display().to_string()),
        renamed: preview::of(&row.layout.renamed),
        renamed_count: row.layout.renamed.len(),
        failed: Arc::from([]),
        failed_count: 0,
    });
    let _ = shared.store.set_state(&id, "transferring", None);
    let (out_tx, mut out_rx) = mpsc::channel(256);
    let received = Arc::new(AtomicU64::new(0));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = oneshot::channel();
    let journal: Journal = {
        let store = shared.store.clone();
        let sizes: Vec<u64> = row.manifest.entries.iter().map(|e| e.size).collect();
        Arc::new(move |entry, dest| {
            let size = sizes.get(entry as usize).copied().unwrap_or(0);
            // (The outcome that follows records the file again, with its name.)
            store
                .set_file(&id, entry, size, "", &FileStatus::Done(dest.to_path_buf()))
                .map_err(std::io::Error::other)
        })
    };
    let job = DataJob {
        plan,
        journal,
        outcomes: out_tx,
        received: received.clone(),
        cancel: cancel_rx,
        done: done_tx,
    };
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
    let mut data_result: Option<Result<(), RecvError>> = None;
    // The data handler has ended (its writer thread too); `done_rx` must not be polled again.
    let mut handler_done = false;
    let mut files_done = already;
    let mut control_open = true;
    let mut stopping: Option<String> = None;
    // Read in a `select!`: needs a reader that keeps a half-read frame (see FrameReader).
    let mut control = FrameReader::new(MAX_CONTROL);
    let mut unread: Option<StreamError> = None;
    let end: TransferState = loop {
        // First: a cancel that cut a write short must not read as that write's failure.
        if cancel.is_set() {
            break cancel_here(s, &cancel_tx, &row);
        }
        if unread.is_some() {
            let _ = cancel_tx.send(true);
            remove_temps(&row);
            break TransferState::Failed {
                reason: format!(
                    "the sender stopped reading ({} s without room for a message)",
                    WRITE_TIMEOUT.as_secs()
                ),
            };
        }
        tokio::select! {
            o = out_rx.recv() => match o {
                Some(o) => {
                    data_started = true;
                    note_unread(record_outcome(&shared, &row, s, &cancel, o, &mut files_done).await, &mut unread);
                }
                                // The data handler is done and every outcome is in.
                None if stopping.is_some() => {
                    break TransferState::Interrupted { reason: stopping.take().unwrap_or_default() };
                }
                None => {
                    let r = match data_result.take() {
                        Some(r) => r,
                        None => (&mut done_rx).await.unwrap_or(Err(RecvError::Protocol("data stream vanished".into()))),
                    };
                    handler_done = true;
                    let bytes = resumed + received.load(Ordering::Relaxed);
                    // Its last words wait for the sender to read them: a cancel does not.
                    match cancel.or(settle(&shared, s, &row, r, bytes, files_done)).await {
                        Some(end) => break end,
                        None => break cancel_here(s, &cancel_tx, &row),
                    }
                }
            },
            r = &mut done_rx, if !handler_done => {
                handler_done = true;
                data_result = Some(r.unwrap_or(Err(RecvError::Protocol("data stream vanished".into()))));
            }
            _ = tick.tick() => {
                let bytes = resumed + received.load(Ordering::Relaxed);
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
            msg = control.next::<_, Control>(&mut s.recv), if control_open => match msg {
                Ok(Some(Control::Pause)) => shared.update_from_peer(&id, |i| apply_pause(i, true, Side::Peer)),
                Ok(Some(Control::Resume)) => shared.update_from_peer(&id, |i| apply_pause(i, false, Side::Peer)),
                Ok(Some(Control::Abort { reason })) => {
                    let _ = cancel_tx.send(true);
                    remove_temps(&row);
                    break TransferState::Failed { reason: format!("the sender gave up: {reason}") };
                }
                // Progress, FileDone, FileFailed and Finished only ever come from a receiver.
                // Ignoring them let a sender write them for ever; it broke the protocol, so the
                // transfer ends here like for any other violation.
                Ok(Some(other)) => {
                    let _ = cancel_tx.send(true);
                    remove_temps(&row);
                    break TransferState::Failed { reason: format!("sender misbehaved: it sent {}, which only a receiver sends", other.name()) };
                }
                // The sender finished writing control messages; the data stream decides.
                Ok(None) => control_open = false,
                Err(StreamError::Peer(Code::Cancelled)) => {
                    let _ = cancel_tx.send(true);
                    remove_temps(&row);
                    break TransferState::Cancelled { by: Side::Peer };
                }
                Err(e @ (StreamError::Connection(_) | StreamError::Io(_))) => {
                    let _ = cancel_tx.send(true);
                    break TransferState::Interrupted { reason: format!("connection lost: {e}") };
                }
                Err(e) => {
                    let _ = cancel_tx.send(true);
                    remove_temps(&row);
                    break TransferState::Failed { reason: format!("sender misbehaved: {e}") };
                }
            },
            cmd = cmds.next(), if stopping.is_none() => match cmd {
                Some(Cmd::Interrupt) => {
                    // Let the writer finish and record what it holds; keep partial files.
                    stopping = Some("this node stopped".into());
                    let _ = cancel_tx.send(true);
                    lock(&shared.data_jobs).remove(&(s.peer, id));
                }
                Some(Cmd::Cancel) | None => break cancel_here(s, &cancel_tx, &row),
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
    // An unclaimed job goes (which ends `done_rx`); a claimed one is told to stop above. Its
    // writer thread may still write, place or remove files for a while, and this run must
    // not end before it: a resume of the transfer waits for the run to end, then sizes the
    // temp files. Racing a writer still busy, a resume was once planned on a temp file the
    // old writer then placed (the sender had sent the last byte before it was killed), and it
    // failed with "No such file or directory" though the file was complete.
    lock(&shared.data_jobs).remove(&(s.peer, id));
    if !handler_done {
        // Nobody reads its outcomes any more: a writer blocked on reporting one stops instead.
        drop(out_rx);
        let _ = cancel_tx.send(true);
        if tokio::time::timeout(WRITER_WAIT, &mut done_rx)
            .await
            .is_err()
        {
            tracing::warn!(transfer = %id.hex(), "the data handler did not stop in time");
        }
        // What it wrote meanwhile of a transfer that ends for good goes too.
        if matches!(
            end,
            TransferState::Failed { .. } | TransferState::Cancelled { .. }
        ) {
            remove_temps(&row);
        }
    }
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
    shared: &Shared,
    row: &TransferRow,
    s: &mut Incoming,
    cancel: &Cancel,
    o: FileOutcome,
    files_done: &mut usize,
) -> Result<(), StreamError> {
    match o {
        FileOutcome::Verified { id, path, .. } => {
            *files_done += 1;
            record_file(shared, row, id, &FileStatus::Done(path));
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
    shared: &Shared,
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
