//! The state every Spacedrop flow shares: the live transfers (what front ends see of each,
//! and the channel to its driver), the open prompts, the offers being admitted, and the
//! accepted receptions waiting for their data stream. Its methods change a live transfer and
//! announce the change as an event, at most every [`EVENT_INTERVAL`] for progress.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_block::recv::{Expect, FileOutcome, Journal, RecvError};
use ferry_p2p::{P2p, PeerId};
use ferry_util::lock;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::commands::{self, Cmd, Commands};
use super::decide;
use super::store::Store;
use super::types::{
    Decision, History, Prompt, PromptOutcome, SpacedropConfig, TransferInfo, TransferState,
};
use super::wire::TransferId;
use crate::event::Event;

pub(super) struct Live {
    pub(super) info: TransferInfo,
    pub(super) cmds: mpsc::Sender<Cmd>,
    /// Set by a cancel, which no queue or blocked write may hold up (see [`commands`]).
    pub(super) cancel: tokio::sync::watch::Sender<bool>,
    /// (when, bytes_done) samples of the last few seconds, for speed and ETA.
    pub(super) samples: VecDeque<(Instant, u64)>,
    pub(super) last_event: Option<Instant>,
    /// A peer's state change that no event has carried yet (see [`SpacedropState::update_from_peer`]).
    pub(super) unannounced: bool,
}

/// A prompt waiting for its first answer: when it opened, what it asks, where the answer goes.
pub(super) type OpenPrompt = (Instant, Prompt, oneshot::Sender<Decision>);

/// How a prompt was settled (see [`SpacedropState::ask`]).
pub(super) enum Asked {
    Answered(Decision),
    /// No room for another prompt (or one of this peer's is open already): never shown.
    Busy,
    TimedOut,
    Withdrawn,
}

/// Progress events per transfer are at most this frequent (≤ 10/s for UIs).
pub(super) const EVENT_INTERVAL: Duration = Duration::from_millis(250);
/// Speed samples are kept at least this far apart.
const SAMPLE_SPACING: Duration = Duration::from_millis(100);

/// What a reception's control flow hands to its data stream's handler.
pub(super) struct DataJob {
    pub(super) plan: HashMap<u32, Expect>,
    pub(super) journal: Journal,
    pub(super) outcomes: mpsc::Sender<FileOutcome>,
    pub(super) received: Arc<AtomicU64>,
    pub(super) cancel: watch::Receiver<bool>,
    pub(super) done: oneshot::Sender<Result<(), RecvError>>,
}

/// How many entries each of Spacedrop's in-memory maps holds: what a node keeps per transfer,
/// prompt, offer or peer while it is in flight. Every one is back to 0 once nothing is (the
/// load test checks it between rounds); the transfers' history lives in the store only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub live: usize,
    pub prompts: usize,
    pub offer_turns: usize,
    pub claims: usize,
    pub data_jobs: usize,
}

pub(crate) struct SpacedropState {
    pub(super) p2p: OnceLock<P2p>,
    pub(super) store: Arc<Store>,
    pub(super) cfg: Mutex<SpacedropConfig>,
    /// Which finished transfers the store keeps (see [`SpacedropState::prune`]).
    pub(super) history: Mutex<History>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) live: Mutex<HashMap<TransferId, Live>>,
    pub(super) prompts: Mutex<HashMap<TransferId, OpenPrompt>>,
    /// Bounds how many offers (each possibly a large manifest) are decoded at once.
    pub(super) offer_slots: Arc<tokio::sync::Semaphore>,
    /// Per peer with offers in flight: one of them at a time may hold an offer slot.
    pub(super) offer_turns: Mutex<HashMap<PeerId, Arc<tokio::sync::Semaphore>>>,
    /// Transfer ids whose offers are being decided, prepared or run, and by which peer.
    pub(super) claims: Mutex<HashMap<TransferId, PeerId>>,
    /// Accepted transfers waiting for their data stream, keyed by the proven sender.
    pub(super) data_jobs: Mutex<HashMap<(PeerId, TransferId), DataJob>>,
}

impl SpacedropState {
    pub(super) fn new(
        store: Store,
        cfg: SpacedropConfig,
        history: History,
        events: broadcast::Sender<Event>,
        offer_slots: usize,
    ) -> SpacedropState {
        SpacedropState {
            p2p: OnceLock::new(),
            store: Arc::new(store),
            cfg: Mutex::new(cfg),
            history: Mutex::new(history.clamped()),
            events,
            live: Mutex::default(),
            prompts: Mutex::default(),
            offer_slots: Arc::new(tokio::sync::Semaphore::new(offer_slots)),
            offer_turns: Mutex::default(),
            claims: Mutex::default(),
            data_jobs: Mutex::default(),
        }
    }

    pub(super) fn footprint(&self) -> Footprint {
        Footprint {
            live: lock(&self.live).len(),
            prompts: lock(&self.prompts).len(),
            offer_turns: lock(&self.offer_turns).len(),
            claims: lock(&self.claims).len(),
            data_jobs: lock(&self.data_jobs).len(),
        }
    }

    /// Opens `prompt` for every front end and waits for the first answer, the timeout, or
    /// `withdrawn` (the sender gave up). Every front end hears how it was settled.
    pub(super) async fn ask(
        &self,
        prompt: Prompt,
        timeout: Duration,
        withdrawn: impl std::future::Future<Output = ()>,
    ) -> Asked {
        let id = parse_id(&prompt.transfer);
        let (tx, rx) = oneshot::channel();
        {
            let mut prompts = lock(&self.prompts);
            let peer_has_one = prompts.values().any(|(_, p, _)| p.peer == prompt.peer);
            if !decide::prompt_room(prompts.len(), peer_has_one) {
                return Asked::Busy;
            }
            prompts.insert(id, (Instant::now(), prompt.clone(), tx));
        }
        let transfer = prompt.transfer.clone();
        self.emit(Event::SpacedropPrompt { prompt });
        let asked = tokio::select! {
            d = tokio::time::timeout(timeout, rx) => match d {
                Ok(Ok(d)) => Asked::Answered(d),
                _ => Asked::TimedOut,
            },
            _ = withdrawn => Asked::Withdrawn,
        };
        lock(&self.prompts).remove(&id);
        let outcome = match &asked {
            Asked::Answered(Decision::Accept { .. }) => PromptOutcome::Accepted,
            Asked::Answered(Decision::Reject) => PromptOutcome::Rejected,
            Asked::TimedOut | Asked::Busy => PromptOutcome::TimedOut,
            Asked::Withdrawn => PromptOutcome::Withdrawn,
        };
        self.emit(Event::PromptResolved { transfer, outcome });
        asked
    }

    pub(super) fn p2p(&self) -> Option<&P2p> {
        self.p2p.get()
    }

    pub(super) fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Registers a live transfer; returns what its driver reads commands from.
    /// Live before it is announced: a front end that hears of it may command it at once
    /// (announced first, a pause right after the event could find no transfer).
    pub(super) fn register(&self, info: TransferInfo) -> Commands {
        let (handles, rx) = commands::channel(16);
        let announced = info.clone();
        lock(&self.live).insert(
            parse_id(&info.id),
            Live {
                info,
                cmds: handles.cmds,
                cancel: handles.cancel,
                samples: VecDeque::new(),
                last_event: Some(Instant::now()),
                unannounced: false,
            },
        );
        self.emit(Event::Transfer {
            transfer: announced,
        });
        rx
    }

    /// Changes a live transfer; emits an event for state changes at once, for progress at most
    /// every [`EVENT_INTERVAL`].
    pub(super) fn update(&self, id: &TransferId, f: impl FnOnce(&mut TransferInfo)) {
        self.change(id, f, true)
    }

    /// A change the peer asked for (its Pause or Resume): applied at once, but announced like
    /// progress, at most every [`EVENT_INTERVAL`]. A peer can send hundreds of thousands of
    /// these a second, and every event carries a [`TransferInfo`]: when that still held the whole
    /// renamed list, 5,000 renamed names and a 3 s flood held 1 GiB in the event channel for a
    /// subscriber that was behind. A change held back is announced by the next update or
    /// [`SpacedropState::flush`], whichever comes first; each driver calls one of them every
    /// [`EVENT_INTERVAL`], so a peer that pauses and then falls silent is still shown paused.
    pub(super) fn update_from_peer(&self, id: &TransferId, f: impl FnOnce(&mut TransferInfo)) {
        self.change(id, f, false)
    }

    /// Announces a peer's state change held back by [`SpacedropState::update_from_peer`], once
    /// [`EVENT_INTERVAL`] has passed since the last event.
    pub(super) fn flush(&self, id: &TransferId) {
        let event = {
            let mut live = lock(&self.live);
            let Some(l) = live.get_mut(id) else { return };
            let now = Instant::now();
            let due = l
                .last_event
                .is_none_or(|t| now.duration_since(t) >= EVENT_INTERVAL);
            if !(l.unannounced && due) {
                return;
            }
            l.unannounced = false;
            l.last_event = Some(now);
            l.info.clone()
        };
        self.emit(Event::Transfer { transfer: event });
    }

    pub(super) fn change(
        &self,
        id: &TransferId,
        f: impl FnOnce(&mut TransferInfo),
        announce_state: bool,
    ) {
        let event = {
            let mut live = lock(&self.live);
            let Some(l) = live.get_mut(id) else { return };
            let before = l.info.state.clone();
            f(&mut l.info);
            let now = Instant::now();
            // At most one sample per SAMPLE_SPACING (the newest replaces the last): a peer's
            // Progress flood (one update each) would otherwise keep every one for 3 s.
            let crowded = l.samples.len() >= 2
                && l.samples
                    .get(l.samples.len() - 2)
                    .is_some_and(|(t, _)| now.duration_since(*t) < SAMPLE_SPACING);
            if crowded {
                l.samples.pop_back();
            }
            l.samples.push_back((now, l.info.bytes_done));
            while l.samples.len() > 2
                && l.samples
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(3))
            {
                l.samples.pop_front();
            }
            if let (Some((t0, b0)), Some((t1, b1))) = (l.samples.front(), l.samples.back()) {
                let dt = t1.duration_since(*t0).as_secs_f64();
                if dt > 0.2 {
                    l.info.speed_bps = b1.saturating_sub(*b0) as f64 / dt;
                }
            }
            if l.info.state != TransferState::Transferring {
                l.info.speed_bps = 0.0;
                l.samples.clear();
            }
            l.info.eta_secs = (l.info.speed_bps > 0.0
                && l.info.state == TransferState::Transferring)
                .then(|| {
                    l.info.bytes_total.saturating_sub(l.info.bytes_done) as f64 / l.info.speed_bps
                });
            let due = l
                .last_event
                .is_none_or(|t| now.duration_since(t) >= EVENT_INTERVAL);
            let changed = l.info.state != before;
            if (announce_state && changed) || due {
                l.last_event = Some(now);
                l.unannounced = false;
                Some(l.info.clone())
            } else {
                l.unannounced |= changed;
                None
            }
        };
        if let Some(transfer) = event {
            self.emit(Event::Transfer { transfer });
        }
    }

    /// Ends a live transfer: final state persisted and announced.
    pub(super) fn finish(&self, id: &TransferId, state: TransferState) {
        let reason = decide::stored_reason(&state);
        if let Err(e) = self.store.set_state(id, state.name(), reason.as_deref()) {
            tracing::error!(error = %e, "could not record the transfer's end");
        }
        let info = lock(&self.live).remove(id).map(|mut l| {
            if state == TransferState::Done && l.info.failed_count == 0 {
                // The last progress report may predate the last bytes: done is all of it.
                l.info.bytes_done = l.info.bytes_total;
                l.info.files_done = l.info.files_total;
            }
            l.info.state = state;
            l.info.speed_bps = 0.0;
            l.info.eta_secs = None;
            l.info
        });
        // Every end makes one more finished transfer: the oldest past the setting goes now
        // (before the end is announced), so the store never holds more than it says, plus the
        // unfinished ones.
        self.prune();
        if let Some(transfer) = info {
            self.emit(Event::Transfer { transfer });
        }
    }

    /// Deletes the finished transfers the history setting no longer keeps (never a live one).
    /// Returns how many went.
    pub(super) fn prune(&self) -> usize {
        let history = *lock(&self.history);
        let live: HashSet<TransferId> = lock(&self.live).keys().copied().collect();
        match self
            .store
            .prune(history, ferry_util::unix_now(), |id| live.contains(id))
        {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(pruned = n, "finished transfers past the history setting");
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prune the transfer history");
                0
            }
        }
    }
}

fn parse_id(hex: &str) -> TransferId {
    TransferId::parse(hex).unwrap_or(TransferId([0; 16]))
}
