//! One front end's session, over any byte stream (the local socket, a tunnel stream): calls
//! in, replies and events out. A session lives exactly as long as its stream: when either
//! side closes it, its reader, its calls in flight and its event subscription end with it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use super::command::Refusal;
use super::wire::{self, Down, Up, WireError, MAX_DOWN, MAX_UP, VERSION};
use super::{Caller, Engine};
use crate::Event;

/// The first frame must come within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands of one session running at once; more wait unread (the front end's writes stall).
pub(crate) const MAX_CALLS: usize = 32;
/// A front end that takes no frame for this long is cut off: it never holds the node.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("no hello within {0:?}")]
    NoHello(Duration),
    #[error("the first frame was not a hello")]
    NotHello,
    #[error("version {0} is not spoken here (this node speaks {VERSION})")]
    Version(u16),
    #[error("the front end stopped reading")]
    Stalled,
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &Down) -> Result<(), SessionError> {
    match tokio::time::timeout(WRITE_TIMEOUT, wire::write(w, msg, MAX_DOWN)).await {
        Ok(Ok(())) => Ok(()),
        // A reply too large for a frame is said as a refusal, not a dead session.
        Ok(Err(WireError::TooLarge { len, max })) => {
            if let Down::Reply { id, .. } = msg {
                let refusal = Refusal::failed(format!("the reply ({len} bytes) is over {max}"));
                let msg = Down::Reply {
                    id: *id,
                    result: Err(refusal),
                };
                return Box::pin(send(w, &msg)).await;
            }
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(SessionError::Stalled),
    }
}

/// Runs a session to its end. `events` is the node's stream, offered to front ends that ask
/// for it (`None`: this transport streams none).
pub(crate) async fn serve<R, W>(
    engine: Engine,
    caller: Caller,
    events: Option<&broadcast::Sender<Event>>,
    mut r: R,
    mut w: W,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, wire::read::<_, Up>(&mut r, MAX_UP)).await
    {
        Err(_) => return Err(SessionError::NoHello(HELLO_TIMEOUT)),
        Ok(r) => r?,
    };
    let Some(Up::Hello {
        version,
        events: want,
    }) = hello
    else {
        return Err(SessionError::NotHello);
    };
    if version != VERSION {
        let reason = format!("version {version} is not spoken here (this node speaks {VERSION})");
        let _ = send(&mut w, &Down::Bye { reason }).await;
        return Err(SessionError::Version(version));
    }
    let mut events = events.filter(|_| want).map(|tx| tx.subscribe());
    send(
        &mut w,
        &Down::Welcome {
            version: VERSION,
            node: engine.status(),
        },
    )
    .await?;
    // The reader runs beside the loop so a frame is never cut in half by the select below;
    // it hands over one call at a time and stops reading while the calls are all busy.
    let (up_tx, mut up_rx) = mpsc::channel::<Result<Up, WireError>>(1);
    let reader = async move {
        loop {
            let frame = wire::read::<_, Up>(&mut r, MAX_UP).await;
            let end = !matches!(frame, Ok(Some(_)));
            let msg = match frame {
                Ok(Some(m)) => Ok(m),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if up_tx.send(msg).await.is_err() || end {
                break;
            }
        }
        // Dropping `up_tx` told the loop; this future waits to be dropped with it.
        drop(up_tx);
        std::future::pending::<()>().await
    };
    let mut calls: JoinSet<(u64, Result<super::Reply, Refusal>)> = JoinSet::new();
    let session = async {
        loop {
            tokio::select! {
                up = up_rx.recv(), if calls.len() < MAX_CALLS => match up {
                    Some(Ok(Up::Call { id, command })) => {
                        let engine = engine.clone();
                        calls.spawn(async move { (id, engine.execute(caller, command).await) });
                    }
                    Some(Ok(Up::Hello { .. })) => {
                        let reason = "a second hello".to_string();
                        let _ = send(&mut w, &Down::Bye { reason }).await;
                        return Ok(());
                    }
                    Some(Err(e)) => {
                        let _ = send(&mut w, &Down::Bye { reason: e.to_string() }).await;
                        return Err(e.into());
                    }
                    // The front end closed its side: the session ends, its calls with it.
                    None => return Ok(()),
                },
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    if let Ok((id, result)) = done {
                        send(&mut w, &Down::Reply { id, result }).await?;
                    }
                }
                e = recv(&mut events) => match e {
                    Ok(Event::NodeStopped) => {
                        let _ = send(&mut w, &Down::Event { event: Event::NodeStopped }).await;
                        let _ = send(&mut w, &Down::Bye { reason: "the node stopped".into() }).await;
                        return Ok(());
                    }
                    Ok(event) => send(&mut w, &Down::Event { event }).await?,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        send(&mut w, &Down::Lagged { missed }).await?
                    }
                    Err(broadcast::error::RecvError::Closed) => events = None,
                },
            }
        }
    };
    // Whichever way the session ends, the reader and every call in flight end with it.
    // (The reader never finishes on its own: it waits to be dropped.)
    tokio::select! {
        () = reader => Ok(()),
        r = session => r,
    }
}

async fn recv(
    events: &mut Option<broadcast::Receiver<Event>>,
) -> Result<Event, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
