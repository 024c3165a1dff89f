//! Remote media (inner protocol 3 of the tunnel): the thumbnails and the bytes of every
//! member's files, for `ferry://`, `ferry get` and preview-media sync. Flow, routing and
//! bounds: `PROTOCOL.md` beside this file.
//!
//! - [`wire`]: the messages, and the decisions (bounds, ranges, which node to ask).
//! - `serve`: answering members from this node's disk and thumbnail store.
//! - `fetch`: asking a member.
//! - `preview`: copying members' thumbnails here in the background.
//! - `get`: downloading a member's file or folder, verified, resumable.
//! - `downloads`: those downloads as the app's transfer list shows them.

pub mod downloads;
mod fetch;
pub mod get;
pub(crate) mod preview;
pub(crate) mod serve;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_index::cas::{self, Cas};
use ferry_index::remote::Located;
use ferry_index::serve::{self as http, Caching, Response};
use ferry_index::EntryKind;
use ferry_p2p::{PeerId, StreamError};
use ferry_util::lock;
use tokio::sync::{Notify, Semaphore};

use super::wire::LibraryId;
use super::{Libraries, Shared, TunnelError};
pub use preview::PreviewConfig;
use wire::{Refusal, Source};

/// Requests a node serves one member at once; more wait their turn.
const SLOTS_PER_MEMBER: usize = 16;
/// A thumbnail no member had is not asked for again for this long (a new one is made within
/// moments, so not long)...
const MISSING_FIRST: Duration = Duration::from_secs(3);
/// ... and again after twice as long each time it still lacks it, up to this: an owner may
/// still be making a thumbnail when a member first asks, or may never make one.
const MISSING_MAX: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("{0}")]
    Refused(Refusal),
    #[error("the member sent something unexpected: {0}")]
    Bad(String),
    #[error("{0} is offline")]
    Offline(String),
    #[error("{0}")]
    Local(String),
}

/// Remote media's state in [`Shared`].
#[derive(Default)]
pub(crate) struct Media {
    /// Per member: the requests of theirs being served.
    slots: Mutex<HashMap<PeerId, Arc<Semaphore>>>,
    /// Thumbnails members said they lack: not asked for again until the first instant, the
    /// second the wait after that one (doubling).
    missing: Mutex<HashMap<Cas, (Instant, Duration)>>,
    /// Wakes preview sync.
    pub(crate) wake: Arc<Notify>,
    pub(crate) previews: Mutex<PreviewConfig>,
    /// The thumbnail store's size, once measured.
    used: Mutex<Option<u64>>,
    /// Downloads started by `Libraries::save`, by id.
    pub(crate) downloads: Mutex<HashMap<String, downloads::Running>>,
}

impl Media {
    fn slots(&self, peer: PeerId) -> Arc<Semaphore> {
        let mut slots = lock(&self.slots);
        // Only members reach this (the tunnel let them in), so the map is bounded by them.
        slots
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(SLOTS_PER_MEMBER)))
            .clone()
    }

    fn is_missing(&self, cas: &Cas) -> bool {
        lock(&self.missing)
            .get(cas)
            .is_some_and(|(until, _)| Instant::now() < *until)
    }

    fn set_missing(&self, cas: Cas) {
        let mut m = lock(&self.missing);
        let now = Instant::now();
        if m.len() >= 4096 {
            m.retain(|_, (until, _)| now < *until + MISSING_MAX);
        }
        let wait = m
            .get(&cas)
            .map_or(MISSING_FIRST, |(_, w)| (*w * 2).min(MISSING_MAX));
        m.insert(cas, (now + wait, wait));
    }

    /// When the next thumbnail a member lacked may be asked for again.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        let now = Instant::now();
        lock(&self.missing)
            .values()
            .map(|(until, _)| *until)
            .filter(|u| *u > now)
            .min()
    }
}

impl Shared {
    fn connected(&self, peer: &PeerId) -> bool {
        self.p2p.get().is_some_and(|p| p.connection(peer).is_some())
    }

    /// A member's name in the library (its short id when it has none).
    fn member_name(&self, lib: &LibraryId, node: &PeerId) -> String {
        self.db(lib)
            .and_then(|db| db.member(node).ok().flatten())
            .map(|m| m.record.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| node.short())
    }

    /// Connected members of `lib` other than this node.
    fn online_members(&self, lib: &LibraryId) -> Vec<PeerId> {
        let me = self.me();
        self.db(lib)
            .and_then(|db| db.members().ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.record.state == super::wire::MemberState::Member)
            .map(|m| m.record.node)
            .filter(|n| *n != me && self.connected(n))
            .collect()
    }

    /// Where an entry's bytes come from now.
    fn route(
        &self,
        l: &Located,
        holders: &[(ferry_index::db::EntryId, [u8; 32])],
    ) -> Source<PeerId> {
        let holders: Vec<_> = holders.iter().map(|(e, n)| (*e, PeerId(*n))).collect();
        wire::route(
            self.me(),
            PeerId(l.owner),
            ferry_index::db::parse_id(&l.info.id).unwrap_or_default(),
            l.location_online,
            &holders,
            |n| self.connected(n),
        )
    }

    /// A thumbnail from whichever connected member has it: the owners of the content first,
    /// then the others (they may hold it from preview sync). Stored here once checked.
    async fn fetch_thumb(self: &Arc<Self>, lib: &LibraryId, cas: Cas) -> Result<bool, MediaError> {
        let c = self
            .contents
            .of(lib)
            .map_err(|e| MediaError::Local(e.to_string()))?;
        let owners = blocking(move || c.holders(&cas)).await?;
        let mut order: Vec<PeerId> = owners.into_iter().map(|(_, n)| PeerId(n)).collect();
        for m in self.online_members(lib) {
            if !order.contains(&m) {
                order.push(m);
            }
        }
        let mut reached = false;
        for peer in order.into_iter().filter(|p| self.connected(p)) {
            match fetch::thumbs(self, &peer, lib, vec![cas]).await {
                Ok(got) => {
                    reached = true;
                    if let Some((_, Some(bytes))) = got.into_iter().next() {
                        self.store_thumbs(lib, vec![(cas, bytes)]).await?;
                        return Ok(true);
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.short(), error = %e, "thumbnail fetch failed")
                }
            }
        }
        if reached {
            self.media.set_missing(cas);
            Ok(false)
        } else {
            Err(MediaError::Offline("every device that has it".into()))
        }
    }

    /// Stores checked thumbnails and records them in the library, so listings show them.
    async fn store_thumbs(
        &self,
        lib: &LibraryId,
        got: Vec<(Cas, Vec<u8>)>,
    ) -> Result<(), MediaError> {
        let c = self
            .contents
            .of(lib)
            .map_err(|e| MediaError::Local(e.to_string()))?;
        let store = self.contents.thumbs().clone();
        let added: u64 = got.iter().map(|(_, b)| b.len() as u64).sum();
        blocking(move || {
            let stored: Vec<Cas> = got.iter().map(|(id, _)| *id).collect();
            let items: Vec<(String, Vec<u8>)> = got
                .into_iter()
                .map(|(id, b)| (cas::to_hex(&id), b))
                .collect();
            store.put_many(&items)?;
            c.mark_previews(&stored)?;
            Ok::<_, ferry_index::IndexError>(())
        })
        .await?;
        let over = {
            let mut used = lock(&self.media.used);
            let cap = lock(&self.media.previews).cap;
            *used = used.map(|n| n + added);
            used.is_none_or(|n| n > cap)
        };
        if over {
            self.keep_under_cap().await?;
        }
        Ok(())
    }

    /// The thumbnail store's size (measured once, then kept up to date).
    async fn store_used(&self) -> u64 {
        if let Some(n) = *lock(&self.media.used) {
            return n;
        }
        let store = self.contents.thumbs().clone();
        let n = tokio::task::spawn_blocking(move || {
            store
                .usage()
                .map(|v| v.iter().map(|(_, n, _)| n).sum())
                .unwrap_or(0)
        })
        .await
        .unwrap_or(0);
        *lock(&self.media.used) = Some(n);
        n
    }

    /// Evicts the least recently used of the members' thumbnails while the store is over its
    /// cap (this node's own never: it would only make them again), and records it in every
    /// library so preview sync does not copy them back.
    async fn keep_under_cap(&self) -> Result<(), MediaError> {
        let cap = lock(&self.media.previews).cap;
        let store = self.contents.thumbs().clone();
        let libs: Vec<Arc<ferry_index::Contents>> = self
            .ids()
            .iter()
            .filter_map(|id| self.contents.of(id).ok())
            .collect();
        let (gone, left) = blocking(move || {
            let own = |hex: &str| {
                cas::from_hex(hex)
                    .is_some_and(|c| libs.iter().any(|l| l.is_own_content(&c).unwrap_or(true)))
            };
            let (gone, left) = store.evict(cap, own)?;
            let ids: Vec<Cas> = gone.iter().filter_map(|h| cas::from_hex(h)).collect();
            for l in &libs {
                l.mark_evicted(&ids)?;
            }
            Ok::<_, ferry_index::IndexError>((gone, left))
        })
        .await?;
        if !gone.is_empty() {
            tracing::info!(
                evicted = gone.len(),
                left,
                cap,
                "thumbnail store over its cap"
            );
        }
        *lock(&self.media.used) = Some(left);
        Ok(())
    }
}

async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, MediaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MediaError::Local(e.to_string()))?
        .map_err(|e| MediaError::Local(e.to_string()))
}

impl Libraries {
    /// Answers a `ferry://` request, local or remote alike (ids only, never a path from the
    /// page):
    /// - `/thumb/<library>/<content id>`: from this node's store, else fetched from a member
    ///   that has it (and kept);
    /// - `/file/<library>/<entry id>`: from this node's disk, else from the member that holds
    ///   it now (its owner, or another member with the same content), with `Range`;
    ///   503 `<device> is offline` when none is connected.
    pub async fn serve_media(&self, path: &str, range: Option<&str>, head: bool) -> Response {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let [what, lib, id] = parts.as_slice() else {
            return http::not_found("no such resource");
        };
        let Some(lib) = LibraryId::parse(lib) else {
            return http::bad_request("bad library id");
        };
        let Ok(c) = self.shared.contents.of(&lib) else {
            return http::not_found("no such library");
        };
        match *what {
            "thumb" => {
                let Some(cas) = cas::from_hex(id) else {
                    return http::bad_request("bad content id");
                };
                self.serve_thumb(lib, c, cas, range, head).await
            }
            "file" => {
                let Some(entry) = ferry_index::db::parse_id(id) else {
                    return http::bad_request("bad entry id");
                };
                self.serve_file(lib, c, entry, range, head).await
            }
            _ => http::not_found("no such resource"),
        }
    }

    async fn serve_thumb(
        &self,
        lib: LibraryId,
        c: Arc<ferry_index::Contents>,
        cas: Cas,
        range: Option<&str>,
        head: bool,
    ) -> Response {
        let hex = cas::to_hex(&cas);
        let store = self.shared.contents.thumbs().clone();
        let (held, here) = {
            let (store, hex) = (store.clone(), hex.clone());
            match blocking(move || c.holds_content(&cas).map(|h| (h, store.has(&hex)))).await {
                Ok(v) => v,
                Err(e) => return http::unavailable(&e.to_string()),
            }
        };
        if !held {
            return http::not_found("no such content in this library");
        }
        if !here {
            if self.shared.media.is_missing(&cas) {
                return http::not_found("no thumbnail");
            }
            match self.shared.fetch_thumb(&lib, cas).await {
                Ok(true) => {}
                Ok(false) => return http::not_found("no thumbnail"),
                Err(e) => return http::unavailable(&e.to_string()),
            }
        }
        let range = range.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            store.touch(&hex);
            let r = http::serve_thumbnail(&store, &hex, range.as_deref());
            if head {
                without_body(r)
            } else {
                r
            }
        })
        .await
        .unwrap_or_else(|e| http::unavailable(&e.to_string()))
    }

    async fn serve_file(
        &self,
        lib: LibraryId,
        c: Arc<ferry_index::Contents>,
        entry: ferry_index::db::EntryId,
        range: Option<&str>,
        head: bool,
    ) -> Response {
        let found = blocking(move || c.sources(&entry)).await;
        let Ok((l, holders)) = found else {
            return http::not_found("no such file in this library");
        };
        if l.info.kind != EntryKind::File {
            return http::not_found("not a file");
        }
        let content_type = http::content_type(std::path::Path::new(&l.info.name));
        let etag = l.info.cas.clone();
        match self.shared.route(&l, &holders) {
            Source::Here => {
                let (range, path) = (range.map(str::to_owned), l.local_path.clone());
                let rel = l.info.path.clone();
                tokio::task::spawn_blocking(move || {
                    let Some(path) = path else {
                        return http::not_found("no such file");
                    };
                    if super::contents::swapped_for_symlink(&path, &rel) {
                        return http::not_found("this file changed; rescan the location");
                    }
                    http::serve_file_as(
                        &path,
                        content_type,
                        range.as_deref(),
                        Caching::Revalidate,
                        etag.as_deref(),
                        head,
                    )
                })
                .await
                .unwrap_or_else(|e| http::unavailable(&e.to_string()))
            }
            Source::Offline(owner) => http::unavailable(&format!(
                "{} is offline",
                self.shared.member_name(&lib, &owner)
            )),
            Source::Member(peer, remote_entry) => {
                let wanted = match http::plan(range, l.info.size) {
                    Ok(w) => w,
                    Err(refusal) => return refusal,
                };
                let (first, count) = wanted.map_or((0, l.info.size), |(f, last)| (f, last - f + 1));
                if head || count == 0 {
                    let part = wanted.map(|w| (w, l.info.size));
                    return http::answer(
                        content_type,
                        vec![],
                        count,
                        part,
                        Caching::Revalidate,
                        etag.as_deref(),
                    );
                }
                let got = async {
                    fetch::range(&self.shared, &peer, &lib, remote_entry, first, count)
                        .await?
                        .into_vec_with_size()
                        .await
                }
                .await;
                match got {
                    Ok((size, body)) => {
                        let n = body.len() as u64;
                        let part = wanted.map(|_| ((first, first + n - 1), size));
                        http::answer(
                            content_type,
                            body,
                            n,
                            part,
                            Caching::Revalidate,
                            etag.as_deref(),
                        )
                    }
                    Err(MediaError::Refused(Refusal::Unsatisfiable { size })) => {
                        http::unsatisfiable(size)
                    }
                    Err(MediaError::Refused(Refusal::NotFound | Refusal::Changed)) => {
                        http::not_found("this file is no longer on its device")
                    }
                    Err(e) => {
                        tracing::info!(peer = %peer.short(), error = %e, "remote file request failed");
                        http::unavailable(&format!(
                            "{} did not answer: {e}",
                            self.shared.member_name(&lib, &peer)
                        ))
                    }
                }
            }
        }
    }
}

fn without_body(mut r: Response) -> Response {
    r.body.clear();
    r
}

impl fetch::Range {
    async fn into_vec_with_size(self) -> Result<(u64, Vec<u8>), MediaError> {
        let size = self.size;
        Ok((size, self.into_vec().await?))
    }
}
