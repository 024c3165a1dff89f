//! Hello (protocol 2, version 1): who the node is, in words people read.
//!
//! Identity is proven by TLS; hello adds the unauthenticated-but-bound display data (name, OS,
//! version). The dialer opens hello right after the handshake; a connection is only counted as
//! "connected" once hello has been exchanged. Either side may send hello again later (a name
//! change); the latest one wins.
//!
//! ```text
//! opener                                responder
//!   header(2, 1)                   ->
//!   frame NodeInfo                 ->
//!                                  <-   frame NodeInfo
//!   FIN                            ->   FIN
//! ```

use std::ops::RangeInclusive;
use std::sync::Weak;
use std::time::Duration;

use crate::router::{BoxFuture, Incoming, Protocol};
use crate::wire::{expect_frame, write_frame, Code, StreamError};

pub const ID: u16 = 2;
pub const VERSION: u16 = 1;
pub const MAX_FRAME: usize = 512;
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Display names are cut to this many bytes of UTF-8 (an mDNS TXT value holds 255).
pub const MAX_NAME_BYTES: usize = 128;
const MAX_SHORT_FIELD: usize = 32;

/// What a node says about itself (display data; the identity is the TLS key).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub os: String,
    pub version: String,
}

impl NodeInfo {
    /// Makes peer-supplied display data safe to show: no control characters, bounded length,
    /// never empty.
    pub fn sanitized(self) -> NodeInfo {
        NodeInfo {
            name: clean(&self.name, MAX_NAME_BYTES).unwrap_or_else(|| "unnamed".into()),
            os: clean(&self.os, MAX_SHORT_FIELD).unwrap_or_else(|| "unknown".into()),
            version: clean(&self.version, MAX_SHORT_FIELD).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// Keeps printable text: none of the [`crate::text::HIDDEN`] characters (controls, separators,
/// invisible formatting that could disguise one name as another); at most `max` bytes, cut on
/// a character boundary.
fn clean(s: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    for c in s.chars().filter(|&c| !crate::text::is_hidden(c)) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_string())
}

/// Sends our info and returns the peer's.
/// Sends our info and returns the peer's; the whole exchange is bounded by [`TIMEOUT`].
pub async fn exchange(conn: &quinn::Connection, ours: &NodeInfo) -> Result<NodeInfo, StreamError> {
    let run = async {
        let (mut send, mut recv) = crate::router::open(conn, ID, VERSION).await?;
        write_frame(&mut send, ours, MAX_FRAME).await?;
        let theirs: NodeInfo = expect_frame(&mut recv, MAX_FRAME, TIMEOUT, "hello").await?;
        let _ = send.finish();
        Ok(theirs.sanitized())
    };
    tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| StreamError::Timeout("hello"))?
}

/// What the responder does with a hello: record it, and say what to answer (or refuse). It may
/// wait before answering (see `node`: a dial of its own to the same peer that is under way).
pub trait HelloSink: Send + Sync + 'static {
    fn on_hello<'a>(
        self: std::sync::Arc<Self>,
        conn: &'a quinn::Connection,
        info: NodeInfo,
    ) -> BoxFuture<'a, Result<NodeInfo, StreamError>>;
}

pub struct HelloProtocol<S: HelloSink>(pub Weak<S>);

impl<S: HelloSink> Protocol for HelloProtocol<S> {
    fn id(&self) -> u16 {
        ID
    }
    fn versions(&self) -> RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            let run = async {
                let theirs: NodeInfo =
                    expect_frame(&mut s.recv, MAX_FRAME, TIMEOUT, "hello").await?;
                let sink = self
                    .0
                    .upgrade()
                    .ok_or(StreamError::Local(Code::Cancelled, "shutting down"))?;
                let ours = sink.on_hello(&s.conn, theirs.sanitized()).await?;
                write_frame(&mut s.send, &ours, MAX_FRAME).await
            };
            tokio::time::timeout(TIMEOUT, run)
                .await
                .map_err(|_| StreamError::Timeout("hello"))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_strips_controls_and_bounds_length() {
        let info = NodeInfo {
            name: "  a\u{1b}[31mb\n ".into(),
            os: "x".repeat(500),
            version: String::new(),
        }
        .sanitized();
        assert_eq!(info.name, "a[31mb");
        assert_eq!(info.os.len(), MAX_SHORT_FIELD);
        assert_eq!(info.version, "unknown");
        assert_eq!(NodeInfo::default().sanitized().name, "unnamed");
        let spoof = NodeInfo {
            name: "bob\u{202e}gpj.exe\u{200b}".into(),
            ..Default::default()
        }
        .sanitized();
        assert_eq!(spoof.name, "bobgpj.exe");
        let long = NodeInfo {
            name: "🦀".repeat(100),
            ..Default::default()
        }
        .sanitized();
        assert_eq!(long.name.len(), MAX_NAME_BYTES);
        // The largest sanitized hello still fits its frame.
        let max = NodeInfo {
            name: "é".repeat(500),
            os: "é".repeat(500),
            version: "é".repeat(500),
        }
        .sanitized();
        assert!(postcard::to_stdvec(&max).unwrap().len() <= MAX_FRAME);
    }
}
