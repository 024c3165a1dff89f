//! Spacedrop's wire messages (protocol 3, the control stream; protocol 4, data streams).
//!
//! ```text
//! sender                                        receiver
//!   [3,1] Offer { transfer, manifest, resume } ->
//!                                               prompt (or auto-accept / known resume)
//!                                            <- Answer::Accepted { starts } | Answer::Rejected
//!   [4,1] DataStart { transfer } + Spaceblock records on a second stream ->
//!                                            <- Progress (every 250 ms), FileDone/FileFailed
//!   Pause / Resume, either way               <->
//!   FIN of the data stream                   ->
//!                                            <- Finished
//! ```
//! Cancel is a reset of both streams with code `Cancelled`; a side that gives up for another
//! reason says why with `Abort { reason }` and closes. Frames are `ferry_p2p::wire` frames; the
//! offer is bounded by the manifest limit, the answer by [`MAX_ANSWER`], every other message by
//! [`MAX_CONTROL`].

use ferry_block::Manifest;
use ferry_p2p::StreamError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const CONTROL_ID: u16 = 3;
pub const DATA_ID: u16 = 4;
pub const VERSION: u16 = 1;
/// Every control message but the offer.
pub const MAX_CONTROL: usize = 4096;
/// The answer: up to 9 bytes per manifest entry.
pub const MAX_ANSWER: usize = 64 + 9 * ferry_block::manifest::MAX_ENTRIES;
/// Longest reason in an `Abort` (it must fit a control frame).
pub const MAX_REASON: usize = 1024;
pub const MAX_OFFER: usize = ferry_block::manifest::MAX_MANIFEST_BYTES + 64;

/// Chosen by the sender at random; with the sender's proven id it names a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferId(pub [u8; 16]);

impl TransferId {
    pub fn random() -> TransferId {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        // The system RNG does not fail on supported platforms; a zero id would still work.
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        TransferId(b)
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn parse(s: &str) -> Option<TransferId> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TransferId(b))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub transfer: TransferId,
    pub manifest: Manifest,
    /// The sender continues a transfer the receiver accepted before.
    pub resume: bool,
}

/// Where the sender starts each entry: `None` to skip it (folders, files already done).
pub type Starts = Vec<Option<u64>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Accepted { starts: Starts },
    Rejected(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("the receiver declined")]
    Declined,
    #[error("no answer in time")]
    TimedOut,
    #[error("not enough space at the receiver ({needed} bytes needed, {available} available)")]
    NoSpace { needed: u64, available: u64 },
    #[error("the receiver is busy with other requests")]
    Busy,
    #[error("the offer was invalid: {0}")]
    Invalid(String),
    #[error("the receiver cannot write to its destination: {0}")]
    Destination(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    Progress { bytes: u64, files: u32 },
    FileDone { id: u32 },
    FileFailed { id: u32, reason: String },
    Pause,
    Resume,
    Finished,
    Abort { reason: String },
}

impl Control {
    /// The variant's name, for messages about it.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Progress { .. } => "Progress",
            Control::FileDone { .. } => "FileDone",
            Control::FileFailed { .. } => "FileFailed",
            Control::Pause => "Pause",
            Control::Resume => "Resume",
            Control::Finished => "Finished",
            Control::Abort { .. } => "Abort",
        }
    }
}

/// First frame of a data stream: which transfer its records belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStart {
    pub transfer: TransferId,
}

/// Reads frames inside a `select!` loop. [`ferry_p2p::wire::read_frame`] is not cancel-safe:
/// dropped while a frame is half read (another branch won), it loses those bytes, and the next
/// read starts mid-frame and misreads every frame after it. (A flood of Pause/Resume from a
/// peer made a receiver take body bytes for a 48 MiB length within a second; any frame split
/// across packets could do the same to an honest transfer.) This keeps the partial frame between
/// calls, and its only await is a `read`, which is cancel-safe. It never reads past the current
/// frame, and holds no more than the bytes that arrived (never the announced length up front).
pub(super) struct FrameReader {
    buf: Vec<u8>,
    max: usize,
}

impl FrameReader {
    /// Frames of at most `max` bytes of body.
    pub(super) fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            max,
        }
    }

    /// The next frame; `Ok(None)` at a clean end between frames. Errors as `read_frame`'s.
    pub(super) async fn next<R, T>(&mut self, r: &mut R) -> Result<Option<T>, StreamError>
    where
        R: AsyncRead + Unpin,
        T: DeserializeOwned,
    {
        match self.body(r).await? {
            Some(body) => ferry_p2p::wire::decode(&body).map(Some),
            None => Ok(None),
        }
    }

    /// The next frame's body, not decoded (for decoding elsewhere).
    pub(super) async fn body<R>(&mut self, r: &mut R) -> Result<Option<Vec<u8>>, StreamError>
    where
        R: AsyncRead + Unpin,
    {
        // A read of buffered bytes is ready at once and quinn's streams spend none of tokio's
        // co-operative budget, so a peer's flood of small frames held this loop's worker
        // thread while it lasted (hostile.rs, Pause/Resume: the runtime stalled 4-5 s and an
        // honest peer's connection idled out). Waiting here, before anything is read, loses
        // nothing if the caller's select! drops this future.
        tokio::task::coop::consume_budget().await;
        loop {
            let need = match self.buf.get(..4) {
                None => 4 - self.buf.len(),
                Some(l) => {
                    let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    if len > self.max {
                        return Err(StreamError::TooLarge { len, max: self.max });
                    }
                    if self.buf.len() == 4 + len {
                        let mut body = std::mem::take(&mut self.buf);
                        body.drain(..4);
                        return Ok(Some(body));
                    }
                    // Room for the rest at once (pages are only used as bytes arrive).
                    self.buf.reserve_exact(4 + len - self.buf.len());
                    4 + len - self.buf.len()
                }
            };
            let mut chunk = [0u8; 8192];
            let want = need.min(chunk.len());
            match r.read(&mut chunk[..want]).await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err(StreamError::Truncated),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(StreamError::from_io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<T: Serialize + for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug>(v: &T) {
        let bytes = postcard::to_stdvec(v).unwrap();
        assert_eq!(&ferry_p2p::wire::decode::<T>(&bytes).unwrap(), v);
    }

    #[test]
    fn messages_round_trip() {
        round_trip(&Answer::Accepted {
            starts: vec![None, Some(0), Some(1 << 40)],
        });
        round_trip(&Answer::Rejected(Refusal::NoSpace {
            needed: 5,
            available: 1,
        }));
        for c in [
            Control::Progress { bytes: 1, files: 2 },
            Control::FileFailed {
                id: 3,
                reason: "x".into(),
            },
            Control::Pause,
            Control::Finished,
        ] {
            round_trip(&c);
        }
        let id = TransferId::random();
        assert_eq!(TransferId::parse(&id.hex()), Some(id));
        assert_eq!(TransferId::parse("zz"), None);
        assert_eq!(TransferId::parse(&"é".repeat(16)), None);
    }

    #[tokio::test]
    async fn frame_reader_survives_being_dropped_mid_frame() {
        use tokio::io::AsyncWriteExt;
        let (mut w, mut r) = tokio::io::duplex(64);
        let msgs: Vec<Control> = (0..50)
            .map(|i| Control::FileFailed {
                id: i,
                reason: "x".repeat(i as usize * 7),
            })
            .collect();
        let bytes: Vec<u8> = msgs
            .iter()
            .flat_map(|m| {
                let body = postcard::to_stdvec(m).unwrap();
                let mut f = (body.len() as u32).to_be_bytes().to_vec();
                f.extend(body);
                f
            })
            .collect();
        // Written a few bytes at a time, so reads are often left waiting inside a frame.
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(3) {
                w.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut reader = FrameReader::new(MAX_CONTROL);
        let (mut got, mut dropped) = (vec![], 0);
        loop {
            tokio::select! {
                m = reader.next::<_, Control>(&mut r) => match m.unwrap() {
                    Some(m) => got.push(m),
                    None => break,
                },
                // Another branch winning drops the read, as in the transfer loops.
                _ = tokio::task::yield_now() => dropped += 1,
            }
        }
        writer.await.unwrap();
        assert_eq!(got, msgs);
        assert!(dropped > 0);
    }

    proptest! {
        #[test]
        fn control_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ferry_p2p::wire::decode::<Control>(&bytes);
            let _ = ferry_p2p::wire::decode::<Answer>(&bytes);
            let _ = ferry_p2p::wire::decode::<Offer>(&bytes);
        }
    }
}
