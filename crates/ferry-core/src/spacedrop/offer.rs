//! Receiving an offer (protocol 3): read and decode it a few at a time, check its id, then
//! recognise a resume or ask (policy or prompt), check space and lay the files out, and hand
//! the accepted transfer to [`receive::run`].

use std::collections::hash_map::Entry;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ferry_p2p::router::{BoxFuture, Incoming, Protocol};
use ferry_p2p::{Code, PeerId, StreamError};
use ferry_util::{lock, unix_now};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::commands::Cmd;
use super::decide::{self, Admission, Stored};
use super::disk;
use super::receive::{self, tell};
use super::state::{Asked, SpacedropState};
use super::store::TransferRow;
use super::types::{Decision, Direction, Prompt, Via};
use super::wire::{
    Answer, FrameReader, Offer, Refusal, TransferId, CONTROL_ID, MAX_CONTROL, MAX_OFFER, VERSION,
};

/// How long the sender has to send its offer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Offers decoded at once (each may carry a manifest of up to 48 MiB).
pub(super) const OFFER_SLOTS: usize = 4;

pub(super) struct ControlProtocol(pub Arc<SpacedropState>);

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

/// An offer, from its first byte to the end of its transfer.
async fn handle_offer(shared: Arc<SpacedropState>, s: &mut Incoming) -> Result<(), StreamError> {
    let offer = match read_offer(&shared, s).await? {
        Ok(offer) => offer,
        Err(refusal) => return reject(s, refusal).await,
    };
    let known = shared.store.get(&offer.transfer).ok().flatten();
    let stored = known.as_ref().map(|row| Stored {
        peer: row.peer,
        direction: row.direction,
        manifest: &row.manifest,
        state: &row.state,
    });
    match (decide::admit(stored, s.peer, &offer), known) {
        (Err(refusal), _) => reject(s, refusal).await,
        (Ok(Admission::Resume), Some(row)) => {
            // The previous run may not have noticed its connection is gone yet.
            stop_previous_run(&shared, &row.id).await;
            if lock(&shared.live).contains_key(&row.id) {
                return reject(s, Refusal::Busy).await;
            }
            let starts = disk::resume_starts(&shared, &row);
            receive::run(shared, s, row, starts).await
        }
        (Ok(_), _) => accept_new(shared, s, offer).await,
    }
}

/// Waits for a slot, reads the offer and decodes it: the offer, or why it is refused.
async fn read_offer(
    shared: &SpacedropState,
    s: &mut Incoming,
) -> Result<Result<Offer, Refusal>, StreamError> {
    let Some((turn, slot)) = offer_slot(shared, s.peer).await else {
        return Ok(Err(Refusal::Busy));
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
    Ok(match valid {
        Ok(()) => Ok(offer),
        Err(e) => Err(Refusal::Invalid(e.to_string())),
    })
}

/// A transfer new here: claim its id, ask, prepare the destination, store it, and run it.
async fn accept_new(
    shared: Arc<SpacedropState>,
    s: &mut Incoming,
    offer: Offer,
) -> Result<(), StreamError> {
    // Not stored yet, but another offer with this id may be prompting or preparing right now:
    // the prompts were keyed by id, so a second peer's offer replaced the first one's prompt
    // (whose offer then failed as timed out, and whose answer went to the second), and two
    // accepted offers would each store their row under the id, the later one winning.
    let _claim = match claim(&shared, offer.transfer, s.peer) {
        Ok(c) => c,
        Err(holder) => return reject(s, decide::claimed(holder, s.peer, offer.resume)).await,
    };
    let (receiving, id_live) = {
        let live = lock(&shared.live);
        let receiving = live
            .values()
            .filter(|l| l.info.direction == Direction::Receive)
            .count();
        (receiving, live.contains_key(&offer.transfer))
    };
    if let Err(refusal) = decide::room(receiving, id_live) {
        return reject(s, refusal).await;
    }
    let decision = match ask(&shared, s, &offer).await? {
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
        tokio::task::spawn_blocking(move || disk::prepare(&dest, &manifest)).await
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
        via: Via::Ferry,
    };
    if let Err(e) = shared.store.put(&row) {
        return reject(
            s,
            Refusal::Destination(format!("cannot record the transfer: {e}")),
        )
        .await;
    }
    let starts = decide::fresh_starts(&row.manifest);
    receive::run(shared, s, row, starts).await
}

/// Interrupts a live run of `id` (a stale one, about to be replaced by a resume) and waits a
/// moment for it to wind down.
async fn stop_previous_run(shared: &SpacedropState, id: &TransferId) {
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

async fn reject(s: &mut Incoming, r: Refusal) -> Result<(), StreamError> {
    tracing::info!(peer = %s.peer.short(), reason = %r, "offer refused");
    tell(s, &Answer::Rejected(r), MAX_CONTROL).await
}

/// A peer's turn to have an offer read and decoded; given back (and forgotten once nobody
/// waits for it) on drop.
struct Turn<'a> {
    shared: &'a SpacedropState,
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
async fn offer_slot(
    shared: &SpacedropState,
    peer: PeerId,
) -> Option<(Turn<'_>, OwnedSemaphorePermit)> {
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
    shared: Arc<SpacedropState>,
    id: TransferId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.shared.claims).remove(&self.id);
    }
}

/// Claims `id` for `peer`'s offer, or says which peer's offer holds it.
fn claim(shared: &Arc<SpacedropState>, id: TransferId, peer: PeerId) -> Result<Claim, PeerId> {
    match lock(&shared.claims).entry(id) {
        Entry::Occupied(e) => Err(*e.get()),
        Entry::Vacant(v) => {
            v.insert(peer);
            Ok(Claim {
                shared: shared.clone(),
                id,
            })
        }
    }
}

/// Policy, or a prompt that the first answer (from any front end) settles. `None` when the
/// offer ended without an answer being sent (the sender withdrew).
async fn ask(
    shared: &SpacedropState,
    s: &mut Incoming,
    offer: &Offer,
) -> Result<Option<Decision>, StreamError> {
    let (policy, timeout) = {
        let c = lock(&shared.cfg);
        (c.accept.clone(), c.prompt_timeout)
    };
    if decide::accepts_unasked(&policy, &s.peer) {
        return Ok(Some(Decision::Accept { dest: None }));
    }
    let peer = shared.p2p().and_then(|p| p.peer(&s.peer));
    let prompt = Prompt {
        transfer: offer.transfer.hex(),
        peer: s.peer,
        peer_short: s.peer.short(),
        peer_name: peer.map(|p| p.name).unwrap_or_default(),
        via: Via::Ferry,
        files: offer.manifest.file_count(),
        bytes: offer.manifest.total_bytes(),
        first_names: offer.manifest.first_names(5),
        first_files: offer.manifest.first_nested_files(5),
        folders: offer.manifest.folder_count(),
        expires_in_ms: timeout.as_millis() as u64,
    };
    let mut probe = [0u8; 1];
    // Anything from the sender now (data, FIN, reset) means it gave up waiting.
    let withdrawn = async {
        let _ = s.recv.read(&mut probe).await;
    };
    match shared.ask(prompt, timeout, withdrawn).await {
        Asked::Answered(d) => Ok(Some(d)),
        Asked::Busy => {
            reject(s, Refusal::Busy).await?;
            Ok(None)
        }
        Asked::TimedOut => {
            reject(s, Refusal::TimedOut).await?;
            Ok(None)
        }
        Asked::Withdrawn => Ok(None),
    }
}
