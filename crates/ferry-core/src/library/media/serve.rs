//! The serving side of remote media: a member asks, this node answers from its own disk (files)
//! or its thumbnail store (thumbnails it made or synced). One request per stream; a bounded
//! number per member at once, the rest wait.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use ferry_index::cas::Cas;
use ferry_index::db::EntryId;
use ferry_index::{Contents, EntryKind};
use ferry_p2p::router::Incoming;
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{Code, PeerId, StreamError};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::wire::{clamp, Refusal, Reply, Request, MAX_REPLY, MAX_REQUEST};
use crate::library::wire::LibraryId;
use crate::library::Shared;

/// A member's request must arrive within this once its stream is open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A request waits at most this long for one of its member's slots.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// A requester that reads nothing for this long loses its stream (and frees its slot).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// File bytes are read and sent this much at a time: what one request holds in memory.
const CHUNK: usize = 256 * 1024;

/// Serves one media request of member `peer` (the tunnel proved it): waits for one of its
/// slots, reads the request, checks its bounds, answers.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    lib: LibraryId,
    peer: PeerId,
    s: &mut Incoming,
) -> Result<(), StreamError> {
    let slots = shared.media.slots(peer);
    let Ok(Ok(_slot)) = tokio::time::timeout(QUEUE_TIMEOUT, slots.acquire_owned()).await else {
        tracing::info!(peer = %peer.short(), "media request waited too long for a slot");
        return Err(StreamError::Local(Code::Busy, "too many media requests"));
    };
    let req: Request =
        expect_frame(&mut s.recv, MAX_REQUEST, REQUEST_TIMEOUT, "media request").await?;
    if let Err(why) = req.check() {
        tracing::warn!(peer = %peer.short(), ?req, "media request out of bounds");
        send(&mut s.send, &Reply::Refused(why)).await?;
        return Err(StreamError::Local(
            Code::ProtocolError,
            "media request out of bounds",
        ));
    }
    let c = shared
        .contents
        .of(&lib)
        .map_err(|_| StreamError::Local(Code::Internal, "library contents"))?;
    let out = &mut s.send;
    match req {
        Request::Thumbs { cas } => thumbs(shared, &c, &peer, cas, out).await?,
        Request::File { entry, first, len } => match open(&c, entry).await {
            Ok((file, size)) => file_bytes(file, size, first, len, out).await?,
            Err(why) => refuse(&peer, why, out).await?,
        },
        Request::Hash { entry } => match open(&c, entry).await {
            Ok((file, size)) => match hash(file.into_std().await).await {
                Some(hash) => send(out, &Reply::Hash { size, hash }).await?,
                None => refuse(&peer, Refusal::Unreadable, out).await?,
            },
            Err(why) => refuse(&peer, why, out).await?,
        },
    }
    out.finish()
        .map_err(|_| StreamError::Local(Code::Internal, "stream closed"))?;
    Ok(())
}

async fn send(out: &mut quinn::SendStream, reply: &Reply) -> Result<(), StreamError> {
    tokio::time::timeout(WRITE_TIMEOUT, write_frame(out, reply, MAX_REPLY))
        .await
        .map_err(|_| StreamError::Timeout("media reader"))?
}

async fn refuse(
    peer: &PeerId,
    why: Refusal,
    out: &mut quinn::SendStream,
) -> Result<(), StreamError> {
    tracing::info!(peer = %peer.short(), %why, "media request refused");
    send(out, &Reply::Refused(why)).await
}

/// Each asked-for thumbnail this node has, for content the library holds in a location that
/// is not the asker's own; `Missing` for the rest (a member never learns more than "not here").
async fn thumbs(
    shared: &Shared,
    c: &Arc<Contents>,
    peer: &PeerId,
    cas: Vec<Cas>,
    out: &mut quinn::SendStream,
) -> Result<(), StreamError> {
    for id in cas {
        let (c, store, asker) = (c.clone(), shared.contents.thumbs().clone(), peer.0);
        let bytes = tokio::task::spawn_blocking(move || {
            if !c.holds_content_for(&id, &asker).unwrap_or(false) {
                return None;
            }
            let (path, _) = store.find(&ferry_index::cas::to_hex(&id))?;
            let bytes = std::fs::read(path).ok()?;
            (bytes.len() <= ferry_index::thumb::MAX_RECEIVED_BYTES).then_some(bytes)
        })
        .await
        .ok()
        .flatten();
        let reply = match bytes {
            Some(bytes) => Reply::Thumb { cas: id, bytes },
            None => Reply::Missing { cas: id },
        };
        send(out, &reply).await?;
    }
    Ok(())
}

/// The file of one of this node's entries, opened, and its length now. Entries of other nodes
/// are `NotFound` like unknown ones: this node serves only its own disk.
async fn open(c: &Arc<Contents>, entry: EntryId) -> Result<(tokio::fs::File, u64), Refusal> {
    let c = c.clone();
    let located = tokio::task::spawn_blocking(move || c.locate(&entry))
        .await
        .map_err(|_| Refusal::Unreadable)?
        .map_err(|_| Refusal::NotFound)?;
    let path = match located.local_path {
        Some(path) if located.info.kind == EntryKind::File => path,
        _ => return Err(Refusal::NotFound),
    };
    // As for this node's own `ferry://`: a path swapped for a symlink since indexing is not
    // followed through the old entry.
    if crate::library::contents::swapped_for_symlink(&path, &located.info.path) {
        return Err(Refusal::Changed);
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Refusal::NotFound,
            _ => Refusal::Unreadable,
        })?;
    let meta = file.metadata().await.map_err(|_| Refusal::Unreadable)?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok((file, meta.len()))
}

/// `Bytes`, then the bytes, a chunk at a time. A file that shrinks meanwhile resets the stream:
/// the header promised `len` bytes.
async fn file_bytes(
    mut file: tokio::fs::File,
    size: u64,
    first: u64,
    len: u64,
    out: &mut quinn::SendStream,
) -> Result<(), StreamError> {
    let (first, len) = match clamp(size, first, len) {
        Ok(r) => r,
        Err(why) => return send(out, &Reply::Refused(why)).await,
    };
    send(out, &Reply::Bytes { size, first, len }).await?;
    let unreadable = || StreamError::Local(Code::Internal, "cannot read the file");
    file.seek(SeekFrom::Start(first))
        .await
        .map_err(|_| unreadable())?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(|_| unreadable())?;
        if n == 0 {
            return Err(StreamError::Local(Code::Internal, "the file shrank"));
        }
        tokio::time::timeout(WRITE_TIMEOUT, out.write_all(&buf[..n]))
            .await
            .map_err(|_| StreamError::Timeout("media reader"))?
            .map_err(StreamError::from)?;
        left -= n as u64;
    }
    Ok(())
}

async fn hash(mut file: std::fs::File) -> Option<[u8; 32]> {
    tokio::task::spawn_blocking(move || ferry_index::cas::full_hash(&mut file).ok().map(|(_, h)| h))
        .await
        .ok()
        .flatten()
}
