//! Wire basics every protocol shares: the stream header, error codes, and bounded frames.
//! The byte layouts are specified in `PROTOCOL.md` beside this crate.

use std::io;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long an opener has to send the 4-byte header of a stream before we give up on it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The first four bytes of every bidirectional stream: which protocol, which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub protocol: u16,
    pub version: u16,
}

impl Header {
    pub const LEN: usize = 4;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let [a, b] = self.protocol.to_be_bytes();
        let [c, d] = self.version.to_be_bytes();
        [a, b, c, d]
    }

    pub fn decode(b: [u8; Self::LEN]) -> Header {
        Header {
            protocol: u16::from_be_bytes([b[0], b[1]]),
            version: u16::from_be_bytes([b[2], b[3]]),
        }
    }

    /// Reads a header, failing with [`StreamError::Timeout`] if it does not arrive in time.
    pub async fn read<R: AsyncRead + Unpin>(
        r: &mut R,
        timeout: Duration,
    ) -> Result<Header, StreamError> {
        let mut b = [0u8; Self::LEN];
        match tokio::time::timeout(timeout, r.read_exact(&mut b)).await {
            Err(_) => Err(StreamError::Timeout("stream header")),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(StreamError::Truncated),
            Ok(Err(e)) => Err(StreamError::from_io(e)),
            Ok(Ok(_)) => Ok(Header::decode(b)),
        }
    }
}

/// Application error codes carried by QUIC `RESET_STREAM` / `STOP_SENDING` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Graceful end; never an error.
    Done,
    UnknownProtocol,
    UnsupportedVersion,
    /// Malformed or out-of-bounds input.
    ProtocolError,
    Timeout,
    Busy,
    Cancelled,
    Rejected,
    Internal,
    /// Not allowed for this peer (e.g. not a library member).
    Refused,
    /// This peer was a library member and has been removed.
    Revoked,
    /// A code this build does not know.
    Unknown(u32),
}

impl Code {
    pub fn to_u32(self) -> u32 {
        match self {
            Code::Done => 0,
            Code::UnknownProtocol => 1,
            Code::UnsupportedVersion => 2,
            Code::ProtocolError => 3,
            Code::Timeout => 4,
            Code::Busy => 5,
            Code::Cancelled => 6,
            Code::Rejected => 7,
            Code::Internal => 8,
            Code::Refused => 9,
            Code::Revoked => 10,
            Code::Unknown(n) => n,
        }
    }

    pub fn from_u64(n: u64) -> Code {
        match n {
            0 => Code::Done,
            1 => Code::UnknownProtocol,
            2 => Code::UnsupportedVersion,
            3 => Code::ProtocolError,
            4 => Code::Timeout,
            5 => Code::Busy,
            6 => Code::Cancelled,
            7 => Code::Rejected,
            8 => Code::Internal,
            9 => Code::Refused,
            10 => Code::Revoked,
            n => Code::Unknown(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    pub fn var_int(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.to_u32())
    }
}

/// Codes carried by QUIC `CONNECTION_CLOSE` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The node is shutting down cleanly.
    Goodbye = 0,
    /// Both sides dialed each other; this connection lost the tie-break.
    Duplicate = 1,
    /// The peer did not introduce itself in time.
    HelloTimeout = 2,
    /// Too many connections.
    Busy = 3,
    /// The peer dialed itself.
    SelfConnection = 4,
}

impl CloseCode {
    pub fn var_int(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self as u32)
    }
}

/// Everything that can end a stream early, from either side.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("stream ended in the middle of a message")]
    Truncated,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("the peer ended the stream with code {0:?}")]
    Peer(Code),
    #[error("ended here: {1}")]
    Local(Code, &'static str),
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("i/o: {0}")]
    Io(io::Error),
}

impl StreamError {
    /// Unwraps the QUIC cause hidden inside an `io::Error` from quinn's AsyncRead/AsyncWrite.
    pub fn from_io(e: io::Error) -> StreamError {
        if let Some(inner) = e.get_ref() {
            if let Some(r) = inner.downcast_ref::<quinn::ReadError>() {
                return StreamError::from(r.clone());
            }
            if let Some(w) = inner.downcast_ref::<quinn::WriteError>() {
                return StreamError::from(w.clone());
            }
        }
        StreamError::Io(e)
    }

    /// The code to reset our side of the stream with after this error.
    pub fn code(&self) -> Code {
        match self {
            StreamError::Timeout(_) => Code::Timeout,
            StreamError::Truncated
            | StreamError::TooLarge { .. }
            | StreamError::Decode(_)
            | StreamError::Protocol(_) => Code::ProtocolError,
            StreamError::Peer(c) | StreamError::Local(c, _) => *c,
            StreamError::Connection(_) | StreamError::Io(_) => Code::Internal,
        }
    }
}

impl From<quinn::ReadError> for StreamError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::Reset(code) => StreamError::Peer(Code::from_u64(code.into_inner())),
            quinn::ReadError::ConnectionLost(c) => StreamError::Connection(c),
            other => StreamError::Io(io::Error::other(other)),
        }
    }
}

impl From<quinn::WriteError> for StreamError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(code) => {
                StreamError::Peer(Code::from_u64(code.into_inner()))
            }
            quinn::WriteError::ConnectionLost(c) => StreamError::Connection(c),
            other => StreamError::Io(io::Error::other(other)),
        }
    }
}

impl From<quinn::ReadExactError> for StreamError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(_) => StreamError::Truncated,
            quinn::ReadExactError::ReadError(r) => r.into(),
        }
    }
}

/// Writes one frame: a 4-byte big-endian length, then the postcard encoding of `msg`.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, max: usize) -> Result<(), StreamError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = postcard::to_stdvec(msg).map_err(|e| StreamError::Decode(e.to_string()))?;
    if body.len() > max {
        return Err(StreamError::TooLarge {
            len: body.len(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await.map_err(StreamError::from_io)
}

/// Reads one frame of at most `max` bytes. `Ok(None)` means the stream ended cleanly *between*
/// frames; ending inside one is [`StreamError::Truncated`]. The length is checked before any
/// allocation, so a lying prefix costs nothing.
pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<Option<T>, StreamError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    // Reads of buffered bytes are ready at once and spend none of tokio's co-operative budget:
    // a loop of reads (a ping flood) would hold its worker thread while the peer kept it fed.
    tokio::task::coop::consume_budget().await;
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r
            .read(&mut len[got..])
            .await
            .map_err(StreamError::from_io)?
        {
            0 if got == 0 => return Ok(None),
            0 => return Err(StreamError::Truncated),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(StreamError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => StreamError::Truncated,
        _ => StreamError::from_io(e),
    })?;
    decode(&body).map(Some)
}

/// Decodes a whole frame body; trailing bytes are an error, not ignored.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, StreamError> {
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| StreamError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(StreamError::Decode(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

/// [`read_frame`] that must produce a message within `timeout`.
pub async fn expect_frame<R, T>(
    r: &mut R,
    max: usize,
    timeout: Duration,
    what: &'static str,
) -> Result<T, StreamError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    match tokio::time::timeout(timeout, read_frame(r, max)).await {
        Err(_) => Err(StreamError::Timeout(what)),
        Ok(Ok(Some(m))) => Ok(m),
        Ok(Ok(None)) => Err(StreamError::Truncated),
        Ok(Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Msg {
        a: u32,
        s: String,
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            protocol: 0x0102,
            version: 0xfffe,
        };
        assert_eq!(h.encode(), [1, 2, 0xff, 0xfe]);
        assert_eq!(Header::decode(h.encode()), h);
    }

    #[test]
    fn codes_round_trip() {
        for n in 0..12u64 {
            assert_eq!(Code::from_u64(n).to_u32() as u64, n);
        }
        assert_eq!(Code::from_u64(u64::MAX), Code::Unknown(u32::MAX));
    }

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let m = Msg {
            a: 7,
            s: "héllo".into(),
        };
        let writer = async {
            write_frame(&mut a, &m, 100).await.unwrap();
            drop(a);
        };
        let reader = async {
            let got: Option<Msg> = read_frame(&mut b, 100).await.unwrap();
            let end: Option<Msg> = read_frame(&mut b, 100).await.unwrap();
            (got, end)
        };
        let ((), (got, end)) = tokio::join!(writer, reader);
        assert_eq!(got, Some(m));
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_refused_before_allocation() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let e = read_frame::<_, Msg>(&mut r, 1024).await.unwrap_err();
        assert!(matches!(
            e,
            StreamError::TooLarge {
                len: 0xffff_ffff,
                max: 1024
            }
        ));
        assert_eq!(e.code(), Code::ProtocolError);
    }

    #[tokio::test]
    async fn truncation_and_garbage_are_typed_errors() {
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame::<_, Msg>(&mut r, 64).await,
            Err(StreamError::Truncated)
        ));
        let mut r: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(
            read_frame::<_, Msg>(&mut r, 64).await,
            Err(StreamError::Truncated)
        ));
        let mut r: &[u8] = &[0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<_, Msg>(&mut r, 64).await,
            Err(StreamError::Decode(_))
        ));
        // A valid message followed by junk inside the same frame.
        let mut body = postcard::to_stdvec(&Msg {
            a: 1,
            s: String::new(),
        })
        .unwrap();
        body.push(9);
        assert!(matches!(decode::<Msg>(&body), Err(StreamError::Decode(_))));
    }

    #[tokio::test]
    async fn stalled_header_times_out() {
        let (_a, mut b) = tokio::io::duplex(64);
        let e = Header::read(&mut b, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, StreamError::Timeout(_)));
    }
}
