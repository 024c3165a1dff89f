//! Ping (protocol 1, version 1): round-trip time over the real connection.
//!
//! This is the reference protocol; later protocols copy its shape: constants for id, version
//! and bounds; message types; an opener function; a [`Protocol`] impl for the responder.
//!
//! ```text
//! opener                                responder
//!   header(1, 1)                   ->
//!   frame Ping { seq }             ->
//!                                  <-   frame Ping { seq }     (echo, same seq)
//!   ... up to MAX_PINGS times ...
//!   FIN                            ->
//!                                  <-   FIN
//! ```
//! Frames are the 4-byte-length + postcard frames of `wire`, at most [`MAX_FRAME`] bytes.
//! The responder waits at most [`IDLE`] for each ping; an echo with the wrong sequence number
//! is a protocol error.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::router::{BoxFuture, Incoming, Protocol};
use crate::wire::{expect_frame, read_frame, write_frame, StreamError};

pub const ID: u16 = 1;
pub const VERSION: u16 = 1;
pub const MAX_FRAME: usize = 16;
/// Pings served on one stream before the responder ends it.
pub const MAX_PINGS: u32 = 10_000;
/// How long either side waits for the next frame.
pub const IDLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ping {
    pub seq: u32,
}

/// Pings the peer `count` times, `interval` apart, returning each round-trip time.
pub async fn ping(
    conn: &quinn::Connection,
    count: u32,
    interval: Duration,
) -> Result<Vec<Duration>, StreamError> {
    let (mut send, mut recv) = tokio::time::timeout(IDLE, crate::router::open(conn, ID, VERSION))
        .await
        .map_err(|_| StreamError::Timeout("ping stream"))??;
    let mut rtts = Vec::with_capacity(count.min(MAX_PINGS) as usize);
    for seq in 0..count.min(MAX_PINGS) {
        if seq > 0 {
            tokio::time::sleep(interval).await;
        }
        let t = Instant::now();
        let round = async {
            write_frame(&mut send, &Ping { seq }, MAX_FRAME).await?;
            expect_frame::<_, Ping>(&mut recv, MAX_FRAME, IDLE, "pong").await
        };
        let echo = tokio::time::timeout(IDLE, round)
            .await
            .map_err(|_| StreamError::Timeout("pong"))??;
        if echo.seq != seq {
            return Err(StreamError::Protocol(format!(
                "pong {} for ping {seq}",
                echo.seq
            )));
        }
        rtts.push(t.elapsed());
    }
    let _ = send.finish();
    Ok(rtts)
}

/// The responder side.
pub struct PingProtocol;

impl Protocol for PingProtocol {
    fn id(&self) -> u16 {
        ID
    }
    fn versions(&self) -> RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            for _ in 0..MAX_PINGS {
                let next =
                    tokio::time::timeout(IDLE, read_frame::<_, Ping>(&mut s.recv, MAX_FRAME)).await;
                match next.map_err(|_| StreamError::Timeout("ping"))?? {
                    Some(p) => tokio::time::timeout(IDLE, write_frame(&mut s.send, &p, MAX_FRAME))
                        .await
                        .map_err(|_| StreamError::Timeout("ping echo"))??,
                    None => return Ok(()),
                }
            }
            Ok(())
        })
    }
}
