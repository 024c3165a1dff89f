//! The control protocol's messages and frames (spec: `PROTOCOL.md` beside this file). One
//! codec for the local socket and for members' sessions in the tunnel: a 4-byte big-endian
//! length, then one JSON object. Lengths are checked before anything is allocated.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::command::{Command, NodeStatus, Refusal, Reply};
use crate::Event;

pub use crate::library::wire::INNER_CONTROL;

pub const VERSION: u16 = 1;
/// A front end's frame: a command (a send of 10,000 paths fits).
pub const MAX_UP: usize = 4 << 20;
/// A member's frame (over the tunnel): commands name things, they do not carry them.
pub const MAX_MEMBER_UP: usize = 256 << 10;
/// A node's frame: a reply (a folder's entries, every transfer, a `ferry://` answer of up to
/// 64 MiB as base64) or an event.
pub const MAX_DOWN: usize = 96 << 20;
/// Once a frame's length has arrived, its body must follow within this.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Front end to node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "up", rename_all = "snake_case")]
pub enum Up {
    /// The first frame: the version spoken, and whether to stream the node's events.
    Hello { version: u16, events: bool },
    /// A command; its reply carries the same `id`. Several may be in flight.
    Call { id: u64, command: Command },
}

/// Node to front end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "down", rename_all = "snake_case")]
pub enum Down {
    /// The answer to `Hello`.
    Welcome {
        version: u16,
        node: NodeStatus,
    },
    Reply {
        id: u64,
        result: Result<Reply, Refusal>,
    },
    Event {
        event: Event,
    },
    /// This front end read too slowly and `missed` events were dropped for it: it should
    /// read the state again (its lists may be stale). The node never waits for a reader.
    Lagged {
        missed: u64,
    },
    /// The session ends, and why (too many front ends, a bad frame, the node stopping).
    Bye {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("a frame's body did not arrive within {0:?}")]
    Slow(std::time::Duration),
    #[error("bad frame: {0}")]
    Decode(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes one frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Decode(e.to_string()))
}

pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    max: usize,
) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg).map_err(|e| WireError::Decode(e.to_string()))?;
    if body.len() > max {
        return Err(WireError::TooLarge {
            len: body.len(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` when the stream ended cleanly between frames.
pub async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(WireError::Truncated),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    // Grown as bytes arrive, not allocated from the claimed length: a length with no body
    // behind it costs nothing, and a body that trickles is cut off.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let mut limited = (&mut *r).take(len as u64);
    match tokio::time::timeout(BODY_TIMEOUT, limited.read_to_end(&mut body)).await {
        Err(_) => return Err(WireError::Slow(BODY_TIMEOUT)),
        Ok(Err(e)) => return Err(WireError::Io(e)),
        Ok(Ok(n)) if n < len => return Err(WireError::Truncated),
        Ok(Ok(_)) => {}
    }
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bounds_hold() {
        let up = Up::Call {
            id: 7,
            command: Command::Locations {
                library: "Photos".into(),
            },
        };
        let mut buf = vec![];
        write(&mut buf, &up, MAX_UP).await.unwrap();
        let back: Up = read(&mut &buf[..], MAX_UP).await.unwrap().unwrap();
        assert_eq!(back, up);
        // A lying length is refused before anything is read or allocated.
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read::<_, Up>(&mut &huge[..], MAX_UP).await,
            Err(WireError::TooLarge { .. })
        ));
        // Cut anywhere inside a frame: truncated, never a panic.
        for cut in 1..buf.len() {
            assert!(read::<_, Up>(&mut &buf[..cut], MAX_UP).await.is_err());
        }
        assert!(read::<_, Up>(&mut &[][..], MAX_UP).await.unwrap().is_none());
        // An unknown command is a decode error.
        let body = br#"{"up":"call","id":1,"command":{"cmd":"rm_rf"}}"#;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        assert!(matches!(
            read::<_, Up>(&mut &frame[..], MAX_UP).await,
            Err(WireError::Decode(_))
        ));
    }
}
