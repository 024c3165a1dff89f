//! What front ends see of Spacedrop: its settings, prompts, transfers and their states.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_block::place::Renamed;
use ferry_p2p::PeerId;
use serde::{Deserialize, Serialize};

use super::preview::{self, Weight};

/// Which way a transfer goes, seen from this node.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Send,
    Receive,
}

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

/// How long finished transfers (done, failed, rejected, cancelled) stay in the transfer store
/// and its listings: the newest `count` of them, none that ended more than `days` days ago.
/// Live and unfinished (waiting, paused, interrupted) transfers are never pruned. A node setting
/// (`history_days` / `history_count` in the app's settings, `--history-days` /
/// `--history-count` for `ferry`, [`crate::control::Command::Configure`] on a running node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Days a finished transfer is kept after it ended (at least 1).
    pub days: u32,
    /// Finished transfers kept at most, the newest first (at least 1).
    pub count: u32,
}

impl History {
    /// 30 days, 1,000 transfers: a month of ordinary use, and a listing that stays small
    /// whatever the rate (a node that ran the load test for a week would otherwise hold
    /// 14 million).
    pub const DEFAULT: History = History {
        days: 30,
        count: 1000,
    };

    /// Within the bounds every front end accepts: at least one day and one transfer.
    pub fn clamped(self) -> History {
        History {
            days: self.days.max(1),
            count: self.count.max(1),
        }
    }
}

impl Default for History {
    fn default() -> Self {
        History::DEFAULT
    }
}

/// Which protocol the other side speaks, and so what its identity is worth.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Via {
    /// A Ferry peer: `peer` is its Ed25519 identity, proven by the TLS handshake.
    #[default]
    Ferry,
    /// A LocalSend device (see `ferry-localsend`): `peer` holds the SHA-256 of its
    /// certificate. `verified` when that certificate was shown on this connection; otherwise
    /// it is only what the device claims. Never a paired or Ferry-verified identity.
    #[serde(rename = "localsend")]
    LocalSend {
        fingerprint: String,
        verified: bool,
        address: String,
    },
}

impl Via {
    pub fn is_localsend(&self) -> bool {
        matches!(self, Via::LocalSend { .. })
    }
}

/// A LocalSend device heard on the LAN, as front ends list it beside Ferry peers.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSendDevice {
    /// What the device calls itself (not proven).
    pub alias: String,
    /// Its certificate's SHA-256, upper-case hex: what a send to it names.
    pub fingerprint: String,
    /// The first digits of the fingerprint, to show.
    pub short: String,
    /// The certificate was shown on a connection (otherwise only claimed).
    pub verified: bool,
    /// Where its HTTPS server listens (`ip:port`).
    pub address: String,
    /// `mobile`, `desktop`, `web`, `headless` or `server`.
    pub device_type: String,
    pub device_model: Option<String>,
}

/// An offer waiting for an answer.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prompt {
    pub transfer: String,
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub peer: PeerId,
    pub peer_short: String,
    pub peer_name: String,
    pub via: Via,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptOutcome {
    Accepted,
    Rejected,
    TimedOut,
    /// The sender gave up (cancelled or disconnected) before anyone answered.
    Withdrawn,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Local,
    Peer,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFile {
    pub path: String,
    pub reason: String,
}

/// Everything a front end shows about one transfer.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferInfo {
    pub id: String,
    pub direction: Direction,
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub peer: PeerId,
    pub peer_name: String,
    pub via: Via,
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
    pub(super) fn add_failed(&mut self, f: FailedFile) {
        preview::push(&mut self.failed, self.failed_count, f);
        self.failed_count += 1;
    }
}

impl Weight for FailedFile {
    fn weight(&self) -> usize {
        self.path.len() + self.reason.len()
    }
}
