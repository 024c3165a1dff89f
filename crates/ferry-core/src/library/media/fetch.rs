//! The asking side of remote media: one tunnel stream per request to a member.

use std::time::Duration;

use ferry_index::cas::Cas;
use ferry_index::db::EntryId;
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{PeerId, StreamError};

use super::wire::{Refusal, Reply, Request, INNER_MEDIA, MAX_REPLY, MAX_REQUEST};
use super::MediaError;
use crate::library::tunnel;
use crate::library::wire::LibraryId;
use crate::library::Shared;

/// Thumbnail bytes one `Thumbs` reply may carry in all (honest ones are a few MB for 256): a
/// member cannot make this node hold 256 MiB per batch.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Each reply frame, and each chunk of bytes, must arrive within this (a member that went
/// away mid-stream is an error, not a hang).
const READ_TIMEOUT: Duration = Duration::from_secs(20);

async fn ask(
    shared: &Shared,
    peer: &PeerId,
    lib: &LibraryId,
    req: &Request,
) -> Result<(quinn::SendStream, quinn::RecvStream), MediaError> {
    let (mut send, recv) = tunnel::open(shared, peer, lib, INNER_MEDIA, false).await?;
    write_frame(&mut send, req, MAX_REQUEST).await?;
    let _ = send.finish();
    Ok((send, recv))
}

async fn reply(recv: &mut quinn::RecvStream) -> Result<Reply, MediaError> {
    match expect_frame(recv, MAX_REPLY, READ_TIMEOUT, "media reply").await? {
        Reply::Refused(why) => Err(MediaError::Refused(why)),
        r => Ok(r),
    }
}

/// Thumbnails of `cas` from `peer`, checked ([`ferry_index::thumb::check_received`]): `None`
/// for each it does not have, or sent as something that is not a thumbnail (logged).
pub(crate) async fn thumbs(
    shared: &Shared,
    peer: &PeerId,
    lib: &LibraryId,
    cas: Vec<Cas>,
) -> Result<Vec<(Cas, Option<Vec<u8>>)>, MediaError> {
    let (_send, mut recv) = ask(shared, peer, lib, &Request::Thumbs { cas: cas.clone() }).await?;
    let mut got = Vec::with_capacity(cas.len());
    let mut total = 0usize;
    for id in cas {
        let bytes = match reply(&mut recv).await? {
            Reply::Thumb { cas, bytes } if cas == id => {
                total += bytes.len();
                if total > MAX_BATCH_BYTES {
                    return Err(MediaError::Bad(
                        "more thumbnail bytes than a batch holds".into(),
                    ));
                }
                Some(bytes)
            }
            Reply::Missing { cas } if cas == id => None,
            other => {
                return Err(MediaError::Bad(format!(
                    "unexpected reply {}",
                    kind(&other)
                )))
            }
        };
        got.push((id, bytes));
    }
    // The decoder is the expensive part: off the async threads, all of a batch at once.
    let peer = *peer;
    tokio::task::spawn_blocking(move || {
        got.into_iter()
            .map(|(id, bytes)| {
                let ok = bytes.filter(|b| match ferry_index::thumb::check_received(b) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(peer = %peer.short(), error = %e, "member sent a bad thumbnail");
                        false
                    }
                });
                (id, ok)
            })
            .collect()
    })
    .await
    .map_err(|e| MediaError::Local(e.to_string()))
}

/// An open byte range of one of `peer`'s files: the whole file's size now, where it starts,
/// how many bytes follow, and the stream they follow on.
pub(crate) struct Range {
    pub size: u64,
    pub len: u64,
    pub recv: quinn::RecvStream,
    _send: quinn::SendStream,
    /// Past this the range is abandoned, however it trickles: a member sending a byte every
    /// few seconds cannot hold a request (or a download) for ever.
    deadline: tokio::time::Instant,
}

/// How long a range may take: a minute, plus a second per MiB.
fn range_deadline(len: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60 + len / (1 << 20))
}

impl Range {
    /// The next bytes into `buf` (at most what is left); 0 once `len` bytes were read.
    pub async fn read(&mut self, buf: &mut [u8], left: u64) -> Result<usize, MediaError> {
        if left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let until = (tokio::time::Instant::now() + READ_TIMEOUT).min(self.deadline);
        match tokio::time::timeout_at(until, self.recv.read(&mut buf[..want])).await {
            Err(_) => Err(StreamError::Timeout("media bytes").into()),
            Ok(Ok(None | Some(0))) => Err(StreamError::Truncated.into()),
            Ok(Ok(Some(n))) => Ok(n),
            Ok(Err(e)) => Err(StreamError::from(e).into()),
        }
    }

    /// All of it, in memory (`len` is at most [`super::wire::MAX_RANGE`]).
    pub async fn into_vec(mut self) -> Result<Vec<u8>, MediaError> {
        let len = usize::try_from(self.len).map_err(|_| MediaError::Bad("range".into()))?;
        let mut body = vec![0u8; len];
        let mut at = 0;
        while at < len {
            let n = self.read(&mut body[at..], (len - at) as u64).await?;
            at += n;
        }
        Ok(body)
    }
}

/// Asks `peer` for bytes `first .. first + len` of its entry `entry`.
pub(crate) async fn range(
    shared: &Shared,
    peer: &PeerId,
    lib: &LibraryId,
    entry: EntryId,
    first: u64,
    len: u64,
) -> Result<Range, MediaError> {
    let (send, mut recv) = ask(shared, peer, lib, &Request::File { entry, first, len }).await?;
    match reply(&mut recv).await? {
        Reply::Bytes {
            size,
            first: f,
            len: n,
        } if f == first && n <= len && n > 0 && f.checked_add(n).is_some_and(|end| end <= size) => {
            Ok(Range {
                size,
                len: n,
                recv,
                _send: send,
                deadline: range_deadline(n),
            })
        }
        other => Err(MediaError::Bad(format!(
            "unexpected reply {}",
            kind(&other)
        ))),
    }
}

/// The BLAKE3 hash of `peer`'s whole file of `entry` now, and its size.
pub(crate) async fn hash(
    shared: &Shared,
    peer: &PeerId,
    lib: &LibraryId,
    entry: EntryId,
) -> Result<(u64, [u8; 32]), MediaError> {
    let (_send, mut recv) = ask(shared, peer, lib, &Request::Hash { entry }).await?;
    // Hashing a large file takes the member a while: wait as long as reading it could.
    let r = tokio::time::timeout(Duration::from_secs(3600), async {
        match ferry_p2p::wire::read_frame(&mut recv, MAX_REPLY).await? {
            Some(Reply::Hash { size, hash }) => Ok((size, hash)),
            Some(Reply::Refused(why)) => Err(MediaError::Refused(why)),
            Some(other) => Err(MediaError::Bad(format!(
                "unexpected reply {}",
                kind(&other)
            ))),
            None => Err(StreamError::Truncated.into()),
        }
    })
    .await;
    r.unwrap_or(Err(StreamError::Timeout("media hash").into()))
}

fn kind(r: &Reply) -> &'static str {
    match r {
        Reply::Thumb { .. } => "Thumb",
        Reply::Missing { .. } => "Missing",
        Reply::Bytes { .. } => "Bytes",
        Reply::Hash { .. } => "Hash",
        Reply::Refused(_) => "Refused",
    }
}

impl From<Refusal> for MediaError {
    fn from(r: Refusal) -> Self {
        MediaError::Refused(r)
    }
}
