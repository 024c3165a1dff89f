//! Everything a front end needs to know, as one enum. Serialized as one JSON object with a
//! `type` field (`node_started`, `peer_found`, …); the CLI's `--json` prints exactly this.

use std::net::SocketAddr;

use ferry_p2p::{LostReason, P2pEvent, PeerId, PeerSnapshot};
use serde::{Deserialize, Serialize};

use crate::library::{LibraryInfo, PairingInfo};
use crate::spacedrop::{Prompt, PromptOutcome, TransferInfo};

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    NodeStarted {
        #[cfg_attr(feature = "specta", specta(type = String))]
        id: PeerId,
        short_id: String,
        name: String,
        #[cfg_attr(feature = "specta", specta(type = String))]
        listen: SocketAddr,
        discovery: bool,
    },
    PeerFound {
        peer: PeerSnapshot,
    },
    PeerChanged {
        peer: PeerSnapshot,
    },
    PeerLost {
        peer: PeerSnapshot,
        reason: LostReason,
    },
    /// Someone wants to send us files: answer with accept/reject before `expires_in_ms`.
    SpacedropPrompt {
        prompt: Prompt,
    },
    /// A prompt was settled (by any front end, the timeout, or the sender withdrawing):
    /// every front end closes it.
    PromptResolved {
        transfer: String,
        outcome: PromptOutcome,
    },
    /// A transfer changed state or made progress (at most 4 per second each).
    Transfer {
        transfer: TransferInfo,
    },
    /// A library was created, renamed, joined, or its members changed.
    Library {
        library: LibraryInfo,
    },
    /// A library was deleted here (or a pairing that never completed was undone).
    LibraryRemoved {
        id: String,
    },
    /// A pairing started, shows its code (`state: confirm`: ask the user), or ended.
    Pairing {
        pairing: PairingInfo,
    },
    /// A location was added, changed state (scanning, online/offline) or its counts changed.
    Location {
        library: String,
        location: ferry_index::LocationInfo,
    },
    LocationRemoved {
        library: String,
        location: String,
    },
    /// An index job made progress (at most 4 per second per job) or ended.
    Index {
        progress: crate::library::IndexProgress,
    },
    /// Entries of a location changed (the watcher, or a finished job): listings are stale.
    ContentsChanged {
        library: String,
        location: String,
    },
    /// The LocalSend devices heard changed (one came, went or changed): the whole list.
    #[serde(rename = "localsend_devices")]
    LocalSendDevices {
        devices: Vec<crate::spacedrop::LocalSendDevice>,
    },
    /// A pull of library rows from a member made progress (at most 4 per second), caught up,
    /// or failed.
    Sync {
        progress: crate::library::sync::SyncProgress,
    },
    /// A download of a member's file or folder (*Save to this device*) changed.
    Download {
        download: crate::library::media::downloads::DownloadInfo,
    },
    NodeStopped,
}

impl From<P2pEvent> for Event {
    fn from(e: P2pEvent) -> Self {
        match e {
            P2pEvent::PeerFound(peer) => Event::PeerFound { peer },
            P2pEvent::PeerChanged(peer) => Event::PeerChanged { peer },
            P2pEvent::PeerLost { peer, reason } => Event::PeerLost { peer, reason },
        }
    }
}
