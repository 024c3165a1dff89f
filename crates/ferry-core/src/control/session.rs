//! One front end's session, over any byte stream (the local socket, a tunnel stream): calls
//! in, replies and events out. A session lives exactly as long as its stream: when either
//! side closes it, its reader, its calls in flight and its event subscription end with it.

use std::collections::HashMap;
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

/// What a transport allows its sessions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest frame a front end may send.
    pub max_up: usize,
    /// A session with no call running and none arriving for this long is closed.
    pub idle: Option<Duration>,
}

/// Runs a session to its end. `events` is the node's stream, offered to front ends that ask
/// for it (`None`: this transport streams none).
pub(crate) async fn serve<R, W>(
    engine: Engine,
    caller: Caller,
    events: Option<&broadcast::Sender<Event>>,
    limits: Limits,
    mut r: R,
    mut w: W,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_up = limits.max_up.min(MAX_UP);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, wire::read::<_, Up>(&mut r, max_up)).await
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
            let frame = wire::read::<_, Up>(&mut r, max_up).await;
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
    let mut calls: JoinSet<Result<super::Reply, Refusal>> = JoinSet::new();
    // Which call each task answers (a task that panics still gets its call a reply).
    let mut ids: HashMap<tokio::task::Id, u64> = HashMap::new();
    let idle = limits.idle.unwrap_or(Duration::MAX);
    let mut last = tokio::time::Instant::now();
    let session = async {
        loop {
            let quiet = last.checked_add(idle);
            tokio::select! {
                up = up_rx.recv(), if calls.len() < MAX_CALLS => match up {
                    Some(Ok(Up::Call { id, command })) => {
                        last = tokio::time::Instant::now();
                        let engine = engine.clone();
                        let task = calls.spawn(async move { engine.execute(caller, command).await });
                        ids.insert(task.id(), id);
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
                Some(done) = calls.join_next_with_id(), if !calls.is_empty() => {
                    last = tokio::time::Instant::now();
                    let (task, result) = match done {
                        Ok((task, result)) => (task, result),
                        Err(e) => (e.id(), Err(Refusal::failed("the command failed inside the node"))),
                    };
                    if let Some(id) = ids.remove(&task) {
                        send(&mut w, &Down::Reply { id, result }).await?;
                    }
                }
                () = sleep_until(quiet), if calls.is_empty() => {
                    let reason = format!("no command for {idle:?}");
                    let _ = send(&mut w, &Down::Bye { reason }).await;
                    return Ok(());
                }
                e = recv(&mut events) => match e {
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

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
