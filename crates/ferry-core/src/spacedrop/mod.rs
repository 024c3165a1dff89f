//! Spacedrop: send files and folders to a nearby peer, with a prompt on the other side.
//!
//! A transfer is one control stream (offer, answer, progress, pause/resume) and one data
//! stream (Spaceblock records), both on the peers' shared connection. Every transfer is
//! persisted ([`store`]), so one interrupted by a dropped connection or a restart
//! resumes where it stopped: the sender re-offers it, the receiver recognises it (same id, same
//! proven peer) and answers with the offsets it already has.
//!
//! - [`wire`]: the messages.
//! - `send` / `receive`: the two flows.
//! - [`Spacedrop`]: the live transfers and prompts, and the commands front ends call.

pub mod preview;
pub mod store;
pub mod wire;

mod commands;
mod receive;
mod send;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use ferry_block::place::Renamed;
use ferry_p2p::{P2p, PeerId};
use ferry_util::{lock, unix_now};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::event::Event;
use store::{Direction, Store};
use wire::{Control, TransferId};

/// How a node answers offers no one is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptPolicy {
    /// Raise a prompt (the default).
    Ask,
    /// Accept from anyone (`--yes`).
    Everyone,
    /// Accept from these peers, ask about others (`--accept-from`).
    From(Vec<PeerId>),
}

#[derive(Debug, Clone)]
pub struct SpacedropConfig {
    /// Where accepted files go unless the answer names another folder.
    pub dest: PathBuf,
    /// Unanswered prompts are rejected after this long, and the sender is told.
    pub prompt_timeout: Duration,
    pub accept: AcceptPolicy,
}

impl Default for SpacedropConfig {
    fn default() -> Self {
        SpacedropConfig {
            dest: dirs::download_dir()
                .unwrap_or_else(|| dirs::home_dir().unwrap_or_default().join("Downloads")),
            prompt_timeout: Duration::from_secs(60),
            accept: AcceptPolicy::Ask,
        }
    }
}

/// An offer waiting for an answer.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize)]
pub struct Prompt {
    pub transfer: String,
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub peer: PeerId,
    pub peer_short: String,
    pub peer_name: String,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub files: usize,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes: u64,
    /// Top-level names, folders with a trailing `/`.
    pub first_names: Vec<String>,
    /// The first files inside those folders, by path ("photos/a.jpg").
    pub first_files: Vec<String>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub folders: usize,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub expires_in_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept { dest: Option<PathBuf> },
    Reject,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptOutcome {
    Accepted,
    Rejected,
    TimedOut,
    /// The sender gave up (cancelled or disconnected) before anyone answered.
    Withdrawn,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Local,
    Peer,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TransferState {
    /// Offered; waiting for the receiver's answer.
    Waiting,
    Transferring,
    Paused {
        by: Side,
    },
    /// The connection dropped or a node stopped; it resumes when both are back.
    Interrupted {
        reason: String,
    },
    Done,
    Failed {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    Cancelled {
        by: Side,
    },
}

impl TransferState {
    pub fn name(&self) -> &'static str {
        match self {
            TransferState::Waiting => "waiting",
            TransferState::Transferring => "transferring",
            TransferState::Paused { .. } => "paused",
            TransferState::Interrupted { .. } => "interrupted",
            TransferState::Done => "done",
            TransferState::Failed { .. } => "failed",
            TransferState::Rejected { .. } => "rejected",
            TransferState::Cancelled { .. } => "cancelled",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TransferState::Done
                | TransferState::Failed { .. }
                | TransferState::Rejected { .. }
                | TransferState::Cancelled { .. }
        )
    }
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedFile {
    pub path: String,
    pub reason: String,
}

/// Everything a front end shows about one transfer.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferInfo {
    pub id: String,
    pub direction: Direction,
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub peer: PeerId,
    pub peer_name: String,
    #[serde(flatten)]
    pub state: TransferState,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub files_total: usize,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub files_done: usize,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes_total: u64,
    /// Bytes the receiver holds (the same figure on both sides).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes_done: u64,
    /// Bytes that were already there when this run started (a resume).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes_resumed: u64,
    pub speed_bps: f64,
    pub eta_secs: Option<f64>,
    pub current: Option<String>,
    pub dest: Option<String>,
    /// Files that got another name here than the sender's: the first ones (at most 100, and
    /// 32 KiB of text). `renamed_count` counts them all.
    #[cfg_attr(feature = "specta", specta(type = Vec<Renamed>))]
    pub renamed: Arc<[Renamed]>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub renamed_count: usize,
    /// Files that failed: the first ones (at most 100, and 32 KiB of text). `failed_count`
    /// counts them all.
    #[cfg_attr(feature = "specta", specta(type = Vec<FailedFile>))]
    pub failed: Arc<[FailedFile]>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub failed_count: usize,
}

impl TransferInfo {
    /// Counts a failed file, and lists it while the preview has room.
    fn add_failed(&mut self, f: FailedFile) {
        preview::push(&mut self.failed, self.failed_count, f);
        self.failed_count += 1;
    }
}

/// Commands to a live transfer's driver.
#[derive(Debug)]
enum Cmd {
    Pause,
    Resume,
    /// Never queued: [`Spacedrop::cancel`] sets the transfer's own flag, which
    /// `Commands::next` yields as this before anything queued.
    Cancel,
    /// The node is stopping: end as interrupted (resumable), keeping partial files.
    Interrupt,
}

struct Live {
    info: TransferInfo,
    cmds: mpsc::Sender<Cmd>,
    /// Set by a cancel, which no queue or blocked write may hold up (see [`commands`]).
    cancel: tokio::sync::watch::Sender<bool>,
    /// (when, bytes_done) samples of the last few seconds, for speed and ETA.
    samples: VecDeque<(Instant, u64)>,
    last_event: Option<Instant>,
    /// A peer's state change that no event has carried yet (see [`Shared::update_from_peer`]).
    unannounced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SpacedropError {
    #[error("no transfer {0}")]
    UnknownTransfer(String),
    #[error("no open prompt {0} (answered already, or expired)")]
    NoPrompt(String),
    #[error("transfer {0} is {1}, not something that can be resumed")]
    NotResumable(String, &'static str),
    #[error(transparent)]
    Collect(#[from] ferry_block::manifest::CollectError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// A prompt waiting for its first answer: when it opened, what it asks, where the answer goes.
type OpenPrompt = (Instant, Prompt, oneshot::Sender<Decision>);

/// Progress events per transfer are at most this frequent (≤ 10/s for UIs).
const EVENT_INTERVAL: Duration = Duration::from_millis(250);
/// Speed samples are kept at least this far apart.
const SAMPLE_SPACING: Duration = Duration::from_millis(100);
/// Prompts a node shows at once; more offers are refused as busy (no prompt spam).
const MAX_PROMPTS: usize = 4;

pub(crate) struct Shared {
    p2p: OnceLock<P2p>,
    store: Arc<Store>,
    cfg: Mutex<SpacedropConfig>,
    events: broadcast::Sender<Event>,
    live: Mutex<HashMap<TransferId, Live>>,
    prompts: Mutex<HashMap<TransferId, OpenPrompt>>,
    /// Bounds how many offers (each possibly a large manifest) are decoded at once.
    offer_slots: Arc<tokio::sync::Semaphore>,
    /// Per peer with offers in flight: one of them at a time may hold an offer slot.
    offer_turns: Mutex<HashMap<PeerId, Arc<tokio::sync::Semaphore>>>,
    /// Transfer ids whose offers are being decided, prepared or run, and by which peer.
    claims: Mutex<HashMap<TransferId, PeerId>>,
    /// Accepted transfers waiting for their data stream, keyed by the proven sender.
    data_jobs: Mutex<HashMap<(PeerId, TransferId), receive::DataJob>>,
}

/// Handle to the node's Spacedrop service.
#[derive(Clone)]
pub struct Spacedrop {
    shared: Arc<Shared>,
}

impl Spacedrop {
    pub(crate) fn new(
        store: Store,
        cfg: SpacedropConfig,
        events: broadcast::Sender<Event>,
    ) -> Spacedrop {
        let shared = Shared {
            p2p: OnceLock::new(),
            store: Arc::new(store),
            cfg: Mutex::new(cfg),
            events,
            live: Mutex::default(),
            prompts: Mutex::default(),
            offer_slots: Arc::new(tokio::sync::Semaphore::new(receive::OFFER_SLOTS)),
            offer_turns: Mutex::default(),
            claims: Mutex::default(),
            data_jobs: Mutex::default(),
        };
        Spacedrop {
            shared: Arc::new(shared),
        }
    }

    /// The stream protocols to register with the peer-to-peer layer.
    pub(crate) fn protocols(&self) -> Vec<Arc<dyn ferry_p2p::Protocol>> {
        vec![
            Arc::new(receive::ControlProtocol(self.shared.clone())),
            Arc::new(receive::DataProtocol(self.shared.clone())),
        ]
    }

    /// Called once the p2p layer runs; with `resume`, picks up outgoing transfers a previous
    /// run left unfinished. Receptions that ended with the process, every file verified but the
    /// end not recorded, are placed and recorded done: the sender had every file confirmed, or
    /// resumes and is told at once that nothing is missing.
    pub(crate) fn attach(&self, p2p: P2p, resume: bool) {
        let _ = self.shared.p2p.set(p2p);
        let store = &self.shared.store;
        for t in store.summaries().unwrap_or_default() {
            if !matches!(
                t.state.as_str(),
                "waiting" | "transferring" | "paused" | "interrupted"
            ) {
                continue;
            }
            match t.direction {
                Direction::Receive
                    if t.files > 0 && t.files_done == t.files && t.failed_count == 0 =>
                {
                    // Verified, maybe not yet moved into place: finish that first.
                    let placed = store
                        .get(&t.id)
                        .ok()
                        .flatten()
                        .is_some_and(|row| receive::place_recovered(&self.shared, &row));
                    if placed {
                        tracing::info!(transfer = %t.id.hex(), "every file was placed before the node stopped: done");
                        let _ = store.set_state(&t.id, "done", None);
                    }
                }
                Direction::Send if resume => {
                    if let Ok(Some(row)) = store.get(&t.id) {
                        send::spawn(self.shared.clone(), row, true);
                    }
                }
                _ => {}
            }
        }
    }

    pub fn config(&self) -> SpacedropConfig {
        lock(&self.shared.cfg).clone()
    }

    pub fn set_config(&self, cfg: SpacedropConfig) {
        *lock(&self.shared.cfg) = cfg;
    }

    /// Offers `paths` (files and folders) to `peer`. Returns at once; progress arrives as events.
    pub async fn send(
        &self,
        peer: PeerId,
        paths: Vec<PathBuf>,
    ) -> Result<TransferId, SpacedropError> {
        let collected = tokio::task::spawn_blocking(move || ferry_block::manifest::collect(&paths))
            .await
            .map_err(|e| ferry_block::manifest::CollectError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })??;
        for (path, why) in &collected.skipped {
            tracing::warn!(path = %path.display(), %why, "not sent");
        }
        let p2p = self.shared.p2p.get();
        let snapshot = p2p.and_then(|p| p.peer(&peer));
        let row = store::TransferRow {
            id: TransferId::random(),
            direction: Direction::Send,
            peer,
            peer_name: snapshot
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            peer_addr: snapshot.and_then(|p| p.addrs.first().map(|a| a.to_string())),
            state: "waiting".into(),
            reason: None,
            dest: None,
            manifest: collected.manifest,
            sources: collected.sources,
            layout: Default::default(),
            created: unix_now(),
        };
        self.shared.store.put(&row)?;
        let id = row.id;
        send::spawn(self.shared.clone(), row, false);
        Ok(id)
    }

    /// Answers a prompt. The first answer wins; later ones get [`SpacedropError::NoPrompt`].
    pub fn answer(&self, transfer: &TransferId, decision: Decision) -> Result<(), SpacedropError> {
        let (_, _, tx) = lock(&self.shared.prompts)
            .remove(transfer)
            .ok_or_else(|| SpacedropError::NoPrompt(transfer.hex()))?;
        tx.send(decision)
            .map_err(|_| SpacedropError::NoPrompt(transfer.hex()))
    }

    /// Open prompts, oldest first.
    pub fn prompts(&self) -> Vec<TransferId> {
        self.open_prompts()
            .iter()
            .filter_map(|p| TransferId::parse(&p.transfer))
            .collect()
    }

    /// Open prompts, oldest first, with what they ask (`expires_in_ms` counted from now).
    pub fn open_prompts(&self) -> Vec<Prompt> {
        let timeout = lock(&self.shared.cfg).prompt_timeout;
        let mut open: Vec<_> = lock(&self.shared.prompts)
            .values()
            .map(|(t, p, _)| {
                let left = timeout.saturating_sub(t.elapsed());
                (
                    *t,
                    Prompt {
                        expires_in_ms: left.as_millis() as u64,
                        ..p.clone()
                    },
                )
            })
            .collect();
        open.sort_by_key(|(t, _)| *t);
        open.into_iter().map(|(_, p)| p).collect()
    }

    pub fn pause(&self, id: &TransferId) -> Result<(), SpacedropError> {
        self.command(id, Cmd::Pause)
    }

    pub fn resume(&self, id: &TransferId) -> Result<(), SpacedropError> {
        if self.command(id, Cmd::Resume).is_ok() {
            return Ok(());
        }
        // Not live: an interrupted transfer from the database, which the sender can restart.
        let row = self
            .shared
            .store
            .get(id)?
            .ok_or_else(|| SpacedropError::UnknownTransfer(id.hex()))?;
        match (row.direction, row.state.as_str()) {
            (Direction::Send, "waiting" | "transferring" | "paused" | "interrupted") => {
                send::spawn(self.shared.clone(), row, true);
                Ok(())
            }
            (Direction::Receive, "interrupted" | "transferring" | "paused") => {
                // The receiver cannot pull; the sender resumes when it sees us again.
                Err(SpacedropError::NotResumable(
                    id.hex(),
                    "waiting for the sender to come back",
                ))
            }
            (_, _) => Err(SpacedropError::NotResumable(
                id.hex(),
                state_name(&row.state),
            )),
        }
    }

    pub fn cancel(&self, id: &TransferId) -> Result<(), SpacedropError> {
        if let Some(l) = lock(&self.shared.live).get(id) {
            l.cancel.send_replace(true);
            return Ok(());
        }
        let row = self
            .shared
            .store
            .get(id)?
            .ok_or_else(|| SpacedropError::UnknownTransfer(id.hex()))?;
        if row.direction == Direction::Receive {
            receive::remove_temps(&row);
        }
        self.shared
            .store
            .set_state(id, "cancelled", Some("cancelled here"))?;
        Ok(())
    }

    fn command(&self, id: &TransferId, cmd: Cmd) -> Result<(), SpacedropError> {
        let tx = lock(&self.shared.live)
            .get(id)
            .map(|l| l.cmds.clone())
            .ok_or_else(|| SpacedropError::UnknownTransfer(id.hex()))?;
        tx.try_send(cmd)
            .map_err(|_| SpacedropError::UnknownTransfer(id.hex()))
    }

    /// Stops every live transfer as interrupted (resumable) and waits for them to wind down.
    pub async fn shutdown(&self) {
        let cmds: Vec<_> = lock(&self.shared.live)
            .values()
            .map(|l| l.cmds.clone())
            .collect();
        for c in cmds {
            let _ = c.send(Cmd::Interrupt).await;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !lock(&self.shared.live).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Live transfers, then the stored ones (newest first).
    pub fn transfers(&self) -> Vec<TransferInfo> {
        let live: HashMap<TransferId, TransferInfo> = lock(&self.shared.live)
            .iter()
            .map(|(k, v)| (*k, v.info.clone()))
            .collect();
        let mut out = vec![];
        for row in self.shared.store.summaries().unwrap_or_default() {
            match live.get(&row.id) {
                Some(info) => out.push(info.clone()),
                None => out.push(info_from_summary(row)),
            }
        }
        out
    }

    /// Renamed files `offset..offset + limit` of a transfer: all of them, where a
    /// [`TransferInfo`] lists the first ones.
    pub fn renamed_files(
        &self,
        id: &TransferId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Renamed>, SpacedropError> {
        renamed_files(&self.shared.store, id, offset, limit)
    }

    /// Failed files `offset..offset + limit` of a transfer: all of them, where a
    /// [`TransferInfo`] lists the first ones.
    pub fn failed_files(
        &self,
        id: &TransferId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<FailedFile>, SpacedropError> {
        failed_files(&self.shared.store, id, offset, limit)
    }
}

/// [`Spacedrop::renamed_files`] from a store (also without a running node).
pub fn renamed_files(
    store: &Store,
    id: &TransferId,
    offset: usize,
    limit: usize,
) -> Result<Vec<Renamed>, SpacedropError> {
    let all = store
        .renamed(id)?
        .ok_or_else(|| SpacedropError::UnknownTransfer(id.hex()))?;
    Ok(all.into_iter().skip(offset).take(limit).collect())
}

/// [`Spacedrop::failed_files`] from a store (also without a running node).
pub fn failed_files(
    store: &Store,
    id: &TransferId,
    offset: usize,
    limit: usize,
) -> Result<Vec<FailedFile>, SpacedropError> {
    Ok(store
        .failed_files(id, offset, limit)?
        .into_iter()
        .map(|(path, reason)| FailedFile { path, reason })
        .collect())
}

fn state_name(s: &str) -> &'static str {
    match s {
        "done" => "done",
        "failed" => "failed",
        "rejected" => "rejected",
        "cancelled" => "cancelled",
        _ => "not resumable",
    }
}

impl Shared {
    fn p2p(&self) -> Option<&P2p> {
        self.p2p.get()
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Registers a live transfer; returns what its driver reads commands from.
    fn register(&self, info: TransferInfo) -> commands::Commands {
        let (handles, rx) = commands::channel(16);
        self.emit(Event::Transfer {
            transfer: info.clone(),
        });
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
        rx
    }

    /// Changes a live transfer; emits an event for state changes at once, for progress at most
    /// every [`EVENT_INTERVAL`].
    fn update(&self, id: &TransferId, f: impl FnOnce(&mut TransferInfo)) {
        self.change(id, f, true)
    }

    /// A change the peer asked for (its Pause or Resume): applied at once, but announced like
    /// progress, at most every [`EVENT_INTERVAL`]. A peer can send hundreds of thousands of
    /// these a second, and every event carries a [`TransferInfo`]: when that still held the whole
    /// renamed list, 5,000 renamed names and a 3 s flood held 1 GiB in the event channel for a
    /// subscriber that was behind. A change held back is announced by the next update or
    /// [`Shared::flush`], whichever comes first; each driver calls one of them every
    /// [`EVENT_INTERVAL`], so a peer that pauses and then falls silent is still shown paused.
    fn update_from_peer(&self, id: &TransferId, f: impl FnOnce(&mut TransferInfo)) {
        self.change(id, f, false)
    }

    /// Announces a peer's state change held back by [`Shared::update_from_peer`], once
    /// [`EVENT_INTERVAL`] has passed since the last event.
    fn flush(&self, id: &TransferId) {
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

    fn change(&self, id: &TransferId, f: impl FnOnce(&mut TransferInfo), announce_state: bool) {
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
    fn finish(&self, id: &TransferId, state: TransferState) {
        let reason = match &state {
            TransferState::Interrupted { reason }
            | TransferState::Failed { reason }
            | TransferState::Rejected { reason } => Some(reason.clone()),
            TransferState::Cancelled { by: Side::Local } => Some("cancelled here".into()),
            TransferState::Cancelled { by: Side::Peer } => Some("cancelled by the peer".into()),
            _ => None,
        };
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
        if let Some(transfer) = info {
            self.emit(Event::Transfer { transfer });
        }
    }
}

/// A stored transfer as front ends show it (also readable while another process runs the node).
pub fn info_from_summary(row: store::Summary) -> TransferInfo {
    let reason = row.reason.unwrap_or_default();
    let state = match row.state.as_str() {
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
        // Anything that was running when its node stopped.
        _ => TransferState::Interrupted {
            reason: if reason.is_empty() {
                "the node stopped".into()
            } else {
                reason
            },
        },
    };
    // A sender records no per-file rows: a finished send had every file but the failed ones.
    let finished_send = row.direction == Direction::Send && state.is_final();
    let (files_done, bytes_done) = match (&state, finished_send) {
        (TransferState::Done, true) => (row.files, row.bytes),
        _ => (row.files_done, row.bytes_done),
    };
    let failed: Vec<FailedFile> = row
        .failed
        .into_iter()
        .map(|(path, reason)| FailedFile { path, reason })
        .collect();
    TransferInfo {
        id: row.id.hex(),
        direction: row.direction,
        peer: row.peer,
        peer_name: row.peer_name,
        state,
        files_total: row.files,
        files_done,
        bytes_total: row.bytes,
        bytes_done,
        bytes_resumed: 0,
        speed_bps: 0.0,
        eta_secs: None,
        current: None,
        dest: row.dest.as_ref().map(|d| d.display().to_string()),
        renamed: preview::of(&row.renamed),
        renamed_count: row.renamed_count,
        failed: preview::of(&failed),
        failed_count: row.failed_count,
    }
}

fn parse_id(hex: &str) -> TransferId {
    TransferId::parse(hex).unwrap_or(TransferId([0; 16]))
}

/// Applies a pause (or its end) to a transfer's state.
fn apply_pause(info: &mut TransferInfo, pause: bool, by: Side) {
    if pause {
        info.state = TransferState::Paused { by };
    } else if matches!(info.state, TransferState::Paused { .. }) {
        info.state = TransferState::Transferring;
    }
}

/// The message the other side gets for our pause/resume command.
fn control_for(cmd: &Cmd) -> Option<Control> {
    match cmd {
        Cmd::Pause => Some(Control::Pause),
        Cmd::Resume => Some(Control::Resume),
        Cmd::Cancel | Cmd::Interrupt => None,
    }
}
