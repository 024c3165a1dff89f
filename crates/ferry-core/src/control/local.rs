//! The local socket: how front ends on this machine (the CLI, a second app) attach to the node
//! that runs here. A Unix domain socket `ferry.sock` in the data dir, mode 0600, and every
//! connection's peer uid checked against the socket's owner: another user of the machine is
//! refused even if the permissions were loosened. (Windows would use a named pipe with an ACL
//! for the user; this build attaches on Unix only and runs its own node elsewhere.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::command::{Command, NodeStatus, Refusal, Reply};
use super::wire::{self, Down, Up, WireError, MAX_DOWN, MAX_UP, VERSION};
use super::{Caller, Engine};
use crate::Event;

/// The socket's name in the data dir.
pub const SOCKET: &str = "ferry.sock";
/// Front ends attached at once; more are told so and closed.
pub const MAX_SESSIONS: usize = 256;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// The listening socket; dropping it stops accepting, ends every session and removes the file.
pub(crate) struct LocalServer {
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
    sessions: Arc<AtomicUsize>,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl LocalServer {
    /// Sessions open now.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}

/// Listens on the data dir's socket. The caller holds the data dir's lock, so a socket file
/// found there is a dead node's and is replaced.
#[cfg(unix)]
pub(crate) fn start(
    engine: Engine,
    events: broadcast::Sender<Event>,
    data_dir: &Path,
) -> std::io::Result<LocalServer> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = std::fs::metadata(&path)?.uid();
    let sessions = Arc::new(AtomicUsize::new(0));
    let count = sessions.clone();
    let task = tokio::spawn(async move {
        let mut running = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            // Out of descriptors, most likely: wait instead of spinning.
                            tracing::warn!(error = %e, "local socket accept");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    match stream.peer_cred() {
                        Ok(c) if c.uid() == owner => {}
                        other => {
                            tracing::warn!(cred = ?other.map(|c| c.uid()), "local socket: another user refused");
                            continue;
                        }
                    }
                    let (r, mut w) = stream.into_split();
                    if count.load(Ordering::Relaxed) >= MAX_SESSIONS {
                        running.spawn(async move {
                            let reason = format!("{MAX_SESSIONS} front ends are attached already");
                            let _ = wire::write(&mut w, &Down::Bye { reason }, MAX_DOWN).await;
                        });
                        continue;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let (engine, events, count) = (engine.clone(), events.clone(), count.clone());
                    running.spawn(async move {
                        let _open = Decrement(count);
                        let limits = super::session::Limits { max_up: MAX_UP, idle: None };
                        if let Err(e) = super::session::serve(engine, Caller::Local, Some(&events), limits, r, w).await {
                            tracing::debug!(error = %e, "local session ended");
                        }
                    });
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
    });
    Ok(LocalServer {
        task,
        path,
        sessions,
    })
}

#[cfg(not(unix))]
pub(crate) fn start(
    _engine: Engine,
    _events: broadcast::Sender<Event>,
    _data_dir: &Path,
) -> std::io::Result<LocalServer> {
    Err(std::io::Error::other(
        "attaching front ends is Unix-only in this build",
    ))
}

struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the node closed the session: {0}")]
    Closed(String),
    #[error("the node answered out of turn")]
    Protocol,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// How long a node has to welcome a front end.
const WELCOME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Events kept for a front end between its reads.
const HEARD: usize = 4096;

/// What a front end hears besides replies.
#[derive(Debug, Clone)]
pub enum Heard {
    Event(Box<Event>),
    /// Events were dropped for this front end: read the state again.
    Lagged(u64),
    /// The session ended (the node stopped, or cut this front end off).
    Closed(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, Refusal>>>>>;

/// A front end's end of a session: calls, and the events it asked for.
pub struct Client {
    node: NodeStatus,
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Unpin + Send>>,
    next: AtomicU64,
    pending: Pending,
    heard: tokio::sync::Mutex<mpsc::Receiver<Heard>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Attaches to the node running on `data_dir`, if one does. `Ok(None)`: none can be
    /// reached (no socket, nobody listening, a path too long for a socket…).
    #[cfg(unix)]
    pub async fn attach(data_dir: &Path, events: bool) -> Result<Option<Client>, ClientError> {
        let stream = match tokio::net::UnixStream::connect(socket_path(data_dir)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "no node to attach to");
                return Ok(None);
            }
        };
        let (r, w) = stream.into_split();
        Client::start(r, w, events).await.map(Some)
    }

    #[cfg(not(unix))]
    pub async fn attach(_data_dir: &Path, _events: bool) -> Result<Option<Client>, ClientError> {
        Ok(None)
    }

    /// Opens a session over a stream: hello, welcome, then a reader routing what comes.
    pub async fn start<R, W>(mut r: R, mut w: W, events: bool) -> Result<Client, ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let hello = Up::Hello {
            version: VERSION,
            events,
        };
        wire::write(&mut w, &hello, MAX_UP).await?;
        let welcome =
            tokio::time::timeout(WELCOME_TIMEOUT, wire::read::<_, Down>(&mut r, MAX_DOWN))
                .await
                .map_err(|_| {
                    ClientError::Closed(format!("no welcome within {WELCOME_TIMEOUT:?}"))
                })?;
        let node = match welcome? {
            Some(Down::Welcome { node, .. }) => node,
            Some(Down::Bye { reason }) => return Err(ClientError::Closed(reason)),
            Some(_) => return Err(ClientError::Protocol),
            None => return Err(ClientError::Closed("closed at once".into())),
        };
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel(HEARD);
        let routes = pending.clone();
        let reader = tokio::spawn(async move {
            // Events this front end did not take in time: told as one lag, never waited for,
            // so replies keep flowing while a caller is busy with a long call.
            let mut missed = 0u64;
            let why = loop {
                let heard = match wire::read::<_, Down>(&mut r, MAX_DOWN).await {
                    Ok(Some(Down::Reply { id, result })) => {
                        if let Some(tx) = ferry_util::lock(&routes).remove(&id) {
                            let _ = tx.send(result);
                        }
                        continue;
                    }
                    Ok(Some(Down::Event { event })) => Heard::Event(Box::new(event)),
                    Ok(Some(Down::Lagged { missed: m })) => {
                        missed += m;
                        continue;
                    }
                    Ok(Some(Down::Bye { reason })) => break reason,
                    Ok(Some(Down::Welcome { .. })) => break "a second welcome".into(),
                    Ok(None) => break "the node closed the session".into(),
                    Err(e) => break e.to_string(),
                };
                if missed > 0 && tx.try_send(Heard::Lagged(missed)).is_ok() {
                    missed = 0;
                }
                match tx.try_send(heard) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => missed += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            };
            // Calls still waiting learn it now (their senders drop with the map).
            ferry_util::lock(&routes).clear();
            let _ = tx.send(Heard::Closed(why)).await;
        });
        Ok(Client {
            node,
            writer: tokio::sync::Mutex::new(Box::new(w)),
            next: AtomicU64::new(1),
            pending,
            heard: tokio::sync::Mutex::new(rx),
            reader,
        })
    }

    /// The node this session is with.
    pub fn node(&self) -> &NodeStatus {
        &self.node
    }

    /// Runs a command on the node; its refusal is an error.
    pub async fn call(&self, command: Command) -> Result<Reply, ClientError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        ferry_util::lock(&self.pending).insert(id, tx);
        let sent = {
            let mut w = self.writer.lock().await;
            wire::write(&mut *w, &Up::Call { id, command }, MAX_UP).await
        };
        if let Err(e) = sent {
            ferry_util::lock(&self.pending).remove(&id);
            return Err(e.into());
        }
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ClientError::Closed("the session ended".into())),
        }
    }

    /// The next event (or lag, or end) of the session; `Closed` once it ended.
    pub async fn next(&self) -> Heard {
        self.heard
            .lock()
            .await
            .recv()
            .await
            .unwrap_or_else(|| Heard::Closed("the session ended".into()))
    }
}
