//! The protocol router: reads each incoming stream's header and hands the stream to the
//! protocol registered under that id, or refuses it with a code (never a hang).
//!
//! The router owns the stream: a handler that returns `Ok` has its send side finished; one that
//! returns `Err` has both sides reset/stopped with `error.code()`, so the peer learns at once
//! and no handler has to remember to do it.

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;

use crate::identity::PeerId;
use crate::wire::{Code, Header, StreamError, HEADER_TIMEOUT};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An accepted stream whose header has been read.
pub struct Incoming {
    /// The proven identity of the peer (from the TLS handshake, never from the stream).
    pub peer: PeerId,
    pub conn: quinn::Connection,
    pub version: u16,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// A protocol that serves incoming streams. One module per protocol implements this.
pub trait Protocol: Send + Sync + 'static {
    /// The id carried in the stream header (see the table in PROTOCOL.md).
    fn id(&self) -> u16;
    /// Versions this build serves.
    fn versions(&self) -> RangeInclusive<u16>;
    /// Serves one stream.
    fn handle<'a>(&'a self, stream: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>>;
}

#[derive(Clone, Default)]
pub struct Router {
    protocols: HashMap<u16, Arc<dyn Protocol>>,
}

impl Router {
    /// Registers a protocol; `Err(id)` if another one already has its id.
    pub fn add(&mut self, p: Arc<dyn Protocol>) -> Result<(), u16> {
        match self.protocols.entry(p.id()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(p.id()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(p);
                Ok(())
            }
        }
    }

    /// Serves one incoming stream to completion, logging (not propagating) every failure.
    pub async fn dispatch(
        &self,
        peer: PeerId,
        conn: quinn::Connection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let header = match Header::read(&mut recv, HEADER_TIMEOUT).await {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(peer = %peer.short(), error = %e, "refused stream: bad header");
                refuse(&mut send, &mut recv, e.code());
                return;
            }
        };
        let Some(proto) = self.protocols.get(&header.protocol).cloned() else {
            tracing::info!(peer = %peer.short(), protocol = header.protocol, "refused stream: unknown protocol");
            refuse(&mut send, &mut recv, Code::UnknownProtocol);
            return;
        };
        if !proto.versions().contains(&header.version) {
            tracing::info!(peer = %peer.short(), protocol = header.protocol, version = header.version, "refused stream: unsupported version");
            refuse(&mut send, &mut recv, Code::UnsupportedVersion);
            return;
        }
        let mut stream = Incoming {
            peer,
            conn,
            version: header.version,
            send,
            recv,
        };
        match proto.handle(&mut stream).await {
            Ok(()) => {
                let _ = stream.send.finish();
            }
            Err(e) => {
                tracing::info!(peer = %peer.short(), protocol = header.protocol, error = %e, "stream failed");
                refuse(&mut stream.send, &mut stream.recv, e.code());
            }
        }
    }
}

fn refuse(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: Code) {
    let _ = send.reset(code.var_int());
    let _ = recv.stop(code.var_int());
}

/// Opens a stream to `protocol` at `version` on `conn`, header sent.
pub async fn open(
    conn: &quinn::Connection,
    protocol: u16,
    version: u16,
) -> Result<(quinn::SendStream, quinn::RecvStream), StreamError> {
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(&Header { protocol, version }.encode())
        .await?;
    Ok((send, recv))
}
