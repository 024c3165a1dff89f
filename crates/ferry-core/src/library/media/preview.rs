//! Preview-media sync: the thumbnails of other members' pictures are copied here in the
//! background, so a member's grid still shows them when it is offline. Woken by what may
//! bring new pictures (a pull from a member caught up); a round asks each connected member
//! for the thumbnails this node lacks, in batches of [`MAX_THUMBS`], owners first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_index::cas::Cas;
use ferry_p2p::PeerId;
use ferry_util::lock;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::wire::MAX_THUMBS;
use super::{blocking, fetch, MediaError};
use crate::event::Event;
use crate::library::wire::LibraryId;
use crate::library::Shared;

/// Settle time after a wake-up, so a burst of sync batches makes one round.
const SETTLE: Duration = Duration::from_millis(300);
/// Batches in flight at once (each one stream to a member).
const PARALLEL: usize = 4;

/// Whether members' thumbnails are copied here, and how much of the disk they may take.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewConfig {
    pub sync: bool,
    /// The thumbnail store's size (this node's own thumbnails included) past which no more
    /// are copied, in bytes.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub cap: u64,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig {
            sync: true,
            cap: 2 << 30,
        }
    }
}

/// Starts the background loop (a node that indexes; one-shot commands do not).
pub(crate) fn start(shared: &Arc<Shared>) {
    let mut events = shared.events.subscribe();
    let weak = Arc::downgrade(shared);
    let wake = shared.media.wake.clone();
    // What may bring members' pictures wakes the loop: a pull from a member caught up (new
    // rows applied, or a member connected). Not every location or contents event: during a
    // sync they come four times a second, each a round that reads the whole library.
    // (Turning a location's copies back on wakes it directly: `Libraries::set_location_previews`.)
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Sync { progress }) if progress.state == "caught_up" => wake.notify_one(),
                Err(broadcast::error::RecvError::Lagged(_)) => wake.notify_one(),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let wake = shared.media.wake.clone();
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            tokio::time::sleep(SETTLE).await;
            let Some(shared) = weak.upgrade() else { return };
            let cfg = *lock(&shared.media.previews);
            if !cfg.sync {
                continue;
            }
            for lib in shared.ids() {
                // Copies stop at the cap (past it the store only evicts for what grids fetch).
                let budget = cfg.cap.saturating_sub(shared.store_used().await);
                if budget == 0 {
                    tracing::info!(cap = cfg.cap, "thumbnail store full: preview sync paused");
                    break;
                }
                if let Err(e) = round(&shared, lib, budget).await {
                    tracing::info!(%lib, error = %e, "preview sync round failed");
                }
            }
            // A thumbnail its owner was still making when asked is asked for again soon (then
            // less and less often): no row change may come to wake this loop for it.
            if let Some(at) = shared.media.next_retry() {
                let wake = shared.media.wake.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    wake.notify_one();
                });
            }
        }
    });
}

/// Copies the thumbnails `lib`'s members have and this node lacks, up to `budget` bytes.
/// Returns the bytes stored.
pub(crate) async fn round(
    shared: &Arc<Shared>,
    lib: LibraryId,
    budget: u64,
) -> Result<u64, MediaError> {
    if shared.usable(&lib).is_err() {
        return Ok(0);
    }
    let c = shared
        .contents
        .of(&lib)
        .map_err(|e| MediaError::Local(e.to_string()))?;
    let online = shared.online_members(&lib);
    if online.is_empty() {
        return Ok(0);
    }
    let mut after: Option<Cas> = None;
    let mut stored = 0u64;
    while stored < budget {
        let c2 = c.clone();
        let wanted =
            blocking(move || c2.previews_wanted(after.as_ref(), MAX_THUMBS * PARALLEL)).await?;
        if wanted.is_empty() {
            break;
        }
        // Owners first; a member that is away is stood in for by any connected one (it may
        // hold the thumbnail from its own preview sync).
        let mut per_peer: HashMap<PeerId, Vec<Cas>> = HashMap::new();
        for (cas, owner) in wanted {
            after = Some(cas);
            if shared.media.is_missing(&cas) {
                continue;
            }
            let owner = PeerId(owner);
            let peer = if online.contains(&owner) {
                owner
            } else {
                online[0]
            };
            per_peer.entry(peer).or_default().push(cas);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (peer, list) in per_peer {
            for chunk in list.chunks(MAX_THUMBS) {
                let (shared, chunk) = (shared.clone(), chunk.to_vec());
                tasks
                    .spawn(async move { (peer, fetch::thumbs(&shared, &peer, &lib, chunk).await) });
            }
        }
        let mut got = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let Ok((peer, result)) = done else { continue };
            match result {
                Ok(list) => {
                    for (cas, bytes) in list {
                        match bytes {
                            Some(b) => got.push((cas, b)),
                            None => shared.media.set_missing(cas),
                        }
                    }
                }
                Err(e) => tracing::info!(peer = %peer.short(), error = %e, "preview batch failed"),
            }
        }
        stored += got.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        if !got.is_empty() {
            shared.store_thumbs(&lib, got).await?;
        }
    }
    Ok(stored)
}
