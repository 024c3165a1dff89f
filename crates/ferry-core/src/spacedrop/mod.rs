//! Spacedrop: send files and folders to a nearby peer, with a prompt on the other side.
//!
//! A transfer is one control stream (offer, answer, progress, pause/resume) and one data
//! stream (Spaceblock records), both on the peers' shared connection. Every transfer is
//! persisted ([`store`]), so one interrupted by a dropped connection or a restart
//! resumes where it stopped: the sender re-offers it, the receiver recognises it (same id, same
//! proven peer) and answers with the offsets it already has. The protocol is specified in
//! `PROTOCOL.md` beside this file.
//!
//! - [`Spacedrop`] (here): the handle front ends hold, and its commands.
//! - [`types`]: what front ends see (settings, prompts, transfers, states).
//! - [`wire`]: the messages; [`store`]: the transfers in SQLite; [`preview`]: the bounded lists
//!   an event carries.
//! - `decide`: the decisions (offer admission, where files start, what an answer or a peer's
//!   message means, which state follows which) as plain functions, unit-tested.
//! - `state`: what the flows share, and how a change to a live transfer is announced.
//! - `commands`: a live transfer's commands, and its cancel.
//! - `send`: the sending flow. Receiving: `offer` (an offer read, admitted, asked about),
//!   `receive` (the accepted transfer's run), `data` (the data stream's handler), `disk`
//!   (folders, space, partial files, placement). The flows move bytes and wait; they ask
//!   `decide`.

pub mod preview;
pub mod store;
pub mod types;
pub mod wire;

mod commands;
mod data;
mod decide;
mod disk;
mod localsend;
mod offer;
mod receive;
mod send;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use ferry_block::place::Renamed;
use ferry_p2p::{P2p, PeerId};
use ferry_util::lock;
use tokio::sync::broadcast;

use crate::event::Event;
use commands::Cmd;
use decide::AtStart;
pub use localsend::{
    peer_of as localsend_peer, short_of as localsend_short, LocalSendConfig, LocalSendError,
};
pub use state::Footprint;
use state::SpacedropState;
pub use store::info_from_summary;
use store::Store;
pub use types::{
    AcceptPolicy, Decision, Direction, FailedFile, History, LocalSendDevice, Prompt, PromptOutcome,
    Side, SpacedropConfig, TransferInfo, TransferState, Via,
};
use wire::TransferId;

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
    #[error(transparent)]
    LocalSend(#[from] LocalSendError),
    #[error("transfer {0} is with a LocalSend device, which cannot {1}")]
    NotOverLocalSend(String, &'static str),
}

/// The files and folders under `paths`, walked off the runtime; what cannot be sent is logged.
async fn collect(paths: Vec<PathBuf>) -> Result<ferry_block::manifest::Collected, SpacedropError> {
    let collected = tokio::task::spawn_blocking(move || ferry_block::manifest::collect(&paths))
        .await
        .map_err(|e| ferry_block::manifest::CollectError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })??;
    for (path, why) in &collected.skipped {
        tracing::warn!(path = %path.display(), %why, "not sent");
    }
    Ok(collected)
}

/// Handle to the node's Spacedrop service.
#[derive(Clone)]
pub struct Spacedrop {
    shared: Arc<SpacedropState>,
    /// LocalSend devices as peers, while the node runs LocalSend (taken at shutdown, which
    /// stops its server).
    localsend: Arc<Mutex<Option<Arc<localsend::LocalSend>>>>,
    /// The hourly pruning of the transfer history (stopped at shutdown).
    pruner: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

impl Spacedrop {
    pub(crate) fn new(
        store: Store,
        cfg: SpacedropConfig,
        history: History,
        events: broadcast::Sender<Event>,
    ) -> Spacedrop {
        let shared = SpacedropState::new(store, cfg, history, events, offer::OFFER_SLOTS);
        Spacedrop {
            shared: Arc::new(shared),
            localsend: Arc::default(),
            pruner: Arc::default(),
        }
    }

    /// Starts LocalSend (server, and multicast discovery if asked) beside the Ferry protocols.
    pub(crate) async fn start_localsend(
        &self,
        data_dir: &Path,
        alias: &str,
        cfg: LocalSendConfig,
    ) -> Result<(), LocalSendError> {
        let ls = localsend::LocalSend::start(self.shared.clone(), data_dir, alias, cfg).await?;
        *lock(&self.localsend) = Some(Arc::new(ls));
        Ok(())
    }

    fn localsend(&self) -> Result<Arc<localsend::LocalSend>, LocalSendError> {
        lock(&self.localsend).clone().ok_or(LocalSendError::Off)
    }

    /// The LocalSend devices heard (none when LocalSend is off).
    pub fn localsend_devices(&self) -> Vec<LocalSendDevice> {
        self.localsend().map(|l| l.devices()).unwrap_or_default()
    }

    /// The LocalSend device `needle` names (alias, fingerprint or a prefix of it, address), if
    /// heard.
    pub fn find_localsend(&self, needle: &str) -> Result<LocalSendDevice, SpacedropError> {
        let ls = self.localsend()?;
        Ok(localsend::device_info(&ls.find(needle)?))
    }

    /// Sends `paths` to the LocalSend device `needle` names (see [`Self::find_localsend`]),
    /// with the PIN it requires, if any. Returns at once; progress arrives as events.
    pub async fn send_localsend(
        &self,
        needle: &str,
        paths: Vec<PathBuf>,
        pin: Option<String>,
    ) -> Result<TransferId, SpacedropError> {
        let ls = self.localsend()?;
        let device = ls.find(needle)?;
        let collected = collect(paths).await?;
        ls.send(self.shared.clone(), &device, collected, pin).await
    }

    /// Sends again what LocalSend send `id` offered, to the same device, with `pin` (for a
    /// receiver that asked for one). A new transfer; LocalSend has no resume.
    pub async fn resend_localsend(
        &self,
        id: &TransferId,
        pin: Option<String>,
    ) -> Result<TransferId, SpacedropError> {
        let ls = self.localsend()?;
        let row = self
            .shared
            .store
            .get(id)?
            .ok_or_else(|| SpacedropError::UnknownTransfer(id.hex()))?;
        let (Direction::Send, Via::LocalSend { fingerprint, .. }) = (row.direction, &row.via)
        else {
            return Err(SpacedropError::UnknownTransfer(id.hex()));
        };
        let device = ls.find(fingerprint)?;
        let collected = ferry_block::manifest::Collected {
            manifest: row.manifest,
            sources: row.sources,
            skipped: vec![],
        };
        ls.send(self.shared.clone(), &device, collected, pin).await
    }

    /// The stream protocols to register with the peer-to-peer layer.
    pub(crate) fn protocols(&self) -> Vec<Arc<dyn ferry_p2p::Protocol>> {
        vec![
            Arc::new(offer::ControlProtocol(self.shared.clone())),
            Arc::new(data::DataProtocol(self.shared.clone())),
        ]
    }

    /// Called once the p2p layer runs; with `resume`, picks up outgoing transfers a previous
    /// run left unfinished. Receptions that ended with the process, every file verified but the
    /// end not recorded, are placed and recorded done: the sender had every file confirmed, or
    /// resumes and is told at once that nothing is missing.
    pub(crate) fn attach(&self, p2p: P2p, resume: bool) {
        let _ = self.shared.p2p.set(p2p);
        let store = &self.shared.store;
        for t in store.unfinished().unwrap_or_default() {
            if t.via.is_localsend() {
                // LocalSend cannot resume: what a stop cut short stays failed.
                if !decide::stored_state(&t.state, String::new()).is_final() {
                    let why = "interrupted: LocalSend transfers cannot resume";
                    let _ = store.set_state(&t.id, "failed", Some(why));
                }
                continue;
            }
            let files = (t.files, t.files_done, t.failed_count);
            match decide::at_start(t.direction, &t.state, files, resume) {
                AtStart::Complete => {
                    // Verified, maybe not yet moved into place: finish that first.
                    let placed = store
                        .get(&t.id)
                        .ok()
                        .flatten()
                        .is_some_and(|row| disk::place_recovered(&self.shared, &row));
                    if placed {
                        tracing::info!(transfer = %t.id.hex(), "every file was placed before the node stopped: done");
                        let _ = store.set_state(&t.id, "done", None);
                    }
                }
                AtStart::Resend => {
                    if let Ok(Some(row)) = store.get(&t.id) {
                        send::spawn(self.shared.clone(), row, true);
                    }
                }
                AtStart::Leave => {}
            }
        }
        // What the setting no longer keeps goes at start, and then at least hourly: a node
        // that ends no transfer for a month still forgets the old ones.
        self.shared.prune();
        let weak = Arc::downgrade(&self.shared);
        let pruner = tokio::spawn(async move {
            let mut hourly = tokio::time::interval(PRUNE_EVERY);
            hourly.tick().await;
            loop {
                hourly.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || shared.prune()).await;
            }
        });
        if let Some(old) = lock(&self.pruner).replace(pruner.abort_handle()) {
            old.abort();
        }
    }

    pub fn config(&self) -> SpacedropConfig {
        lock(&self.shared.cfg).clone()
    }

    pub fn set_config(&self, cfg: SpacedropConfig) {
        *lock(&self.shared.cfg) = cfg;
    }

    /// Which finished transfers are kept.
    pub fn history(&self) -> History {
        *lock(&self.shared.history)
    }

    /// Changes which finished transfers are kept (at least one day and one transfer), and
    /// prunes what the new setting no longer keeps at once. Returns how many went.
    pub fn set_history(&self, history: History) -> usize {
        *lock(&self.shared.history) = history.clamped();
        self.shared.prune()
    }

    /// Offers `paths` (files and folders) to `peer`. Returns at once; progress arrives as events.
    pub async fn send(
        &self,
        peer: PeerId,
        paths: Vec<PathBuf>,
    ) -> Result<TransferId, SpacedropError> {
        let collected = collect(paths).await?;
        let p2p = self.shared.p2p.get();
        let snapshot = p2p.and_then(|p| p.peer(&peer));
        let row = store::TransferRow::outgoing(
            peer,
            snapshot
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            snapshot.and_then(|p| p.addrs.first().map(|a| a.to_string())),
            collected,
            Via::Ferry,
        );
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
        self.refuse_localsend(id, "pause")?;
        self.command(id, Cmd::Pause)
    }

    /// LocalSend has no pause and no resume.
    fn refuse_localsend(&self, id: &TransferId, what: &'static str) -> Result<(), SpacedropError> {
        let live = lock(&self.shared.live)
            .get(id)
            .map(|l| l.info.via.is_localsend());
        let localsend = match live {
            Some(l) => l,
            None => self
                .shared
                .store
                .get(id)?
                .is_some_and(|r| r.via.is_localsend()),
        };
        match localsend {
            true => Err(SpacedropError::NotOverLocalSend(id.hex(), what)),
            false => Ok(()),
        }
    }

    pub fn resume(&self, id: &TransferId) -> Result<(), SpacedropError> {
        self.refuse_localsend(id, "resume")?;
        if self.command(id, Cmd::Resume).is_ok() {
            return Ok(());
        }
        // Not live: an interrupted transfer from the database, which the sender can restart.
        let row = self
            .shared
            .store
            .get(id)?
            .ok_or_else(|| SpacedropError::UnknownTransfer(id.hex()))?;
        match decide::resumable(row.direction, &row.state) {
            Ok(()) => {
                send::spawn(self.shared.clone(), row, true);
                Ok(())
            }
            Err(why) => Err(SpacedropError::NotResumable(id.hex(), why)),
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
            disk::remove_temps(&row);
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
        if let Some(pruner) = lock(&self.pruner).take() {
            pruner.abort();
        }
        let localsend = lock(&self.localsend).take();
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
        // Only now: an interrupted LocalSend reception ends through its server.
        drop(localsend);
    }

    /// How many entries Spacedrop's in-memory maps hold (see [`Footprint`]).
    pub fn footprint(&self) -> Footprint {
        self.shared.footprint()
    }

    /// Every transfer the store holds, newest first (live ones as they are now): the finished
    /// ones the history setting keeps, and the unfinished ones. Front ends list a page at a
    /// time ([`Self::transfers_page`]).
    pub fn transfers(&self) -> Vec<TransferInfo> {
        self.overlay(self.shared.store.summaries().unwrap_or_default())
    }

    /// Up to `limit` transfers, newest first, after `before` (the last of the previous page;
    /// `None`: from the newest). See [`store::Store::summaries_page`].
    pub fn transfers_page(
        &self,
        before: Option<&TransferId>,
        limit: usize,
    ) -> Result<TransfersPage, SpacedropError> {
        let (page, more) = self
            .shared
            .store
            .summaries_page(before, limit)?
            .ok_or_else(|| gone(before))?;
        Ok(TransfersPage::of(self.overlay(page), more))
    }

    /// The transfers whose id starts with `prefix`, newest first.
    pub fn find_transfers(&self, prefix: &str) -> Vec<TransferInfo> {
        self.overlay(
            self.shared
                .store
                .summaries_by_prefix(prefix)
                .unwrap_or_default(),
        )
    }

    /// Every unfinished transfer and the `newest` newest others, newest first: what a front
    /// end shows at once. `next`: where [`Self::transfers_page`] goes on from (the
    /// `newest`-th), when more follow.
    pub fn recent_transfers(&self, newest: usize) -> TransfersPage {
        let store = &self.shared.store;
        let rows = store.summaries_recent(newest).unwrap_or_default();
        let next = store
            .listed_at(newest)
            .ok()
            .flatten()
            .and_then(|_| store.listed_at(newest.checked_sub(1)?).ok().flatten())
            .map(|id| id.hex());
        TransfersPage {
            transfers: self.overlay(rows),
            next,
        }
    }

    /// Stored transfers as front ends see them: a live one as it is now.
    fn overlay(&self, rows: Vec<store::Summary>) -> Vec<TransferInfo> {
        let live = lock(&self.shared.live);
        rows.into_iter()
            .map(|row| match live.get(&row.id) {
                Some(l) => l.info.clone(),
                None => info_from_summary(row),
            })
            .collect()
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

/// How often a running node prunes its transfer history even if no transfer ends.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One page of a transfer listing.
#[derive(Debug, Clone, PartialEq)]
pub struct TransfersPage {
    pub transfers: Vec<TransferInfo>,
    /// The id to list `before` for the next page; `None` when this page is the last.
    pub next: Option<String>,
}

impl TransfersPage {
    fn of(transfers: Vec<TransferInfo>, more: bool) -> TransfersPage {
        let next = if more {
            transfers.last().map(|t| t.id.clone())
        } else {
            None
        };
        TransfersPage { transfers, next }
    }
}

fn gone(before: Option<&TransferId>) -> SpacedropError {
    SpacedropError::UnknownTransfer(before.map(|b| b.hex()).unwrap_or_default())
}

/// [`Spacedrop::transfers_page`] from a store (also without a running node).
pub fn transfers_page(
    store: &Store,
    before: Option<&TransferId>,
    limit: usize,
) -> Result<TransfersPage, SpacedropError> {
    let (page, more) = store
        .summaries_page(before, limit)?
        .ok_or_else(|| gone(before))?;
    Ok(TransfersPage::of(
        page.into_iter().map(info_from_summary).collect(),
        more,
    ))
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
