//! Where a command runs: the node already running on this data dir (the app, or `ferry node`:
//! the CLI attaches to it over its socket), a node of its own, or, for bookkeeping that needs
//! no network, the data dir itself. All three take the same commands (`ferry_core::control`).

use anyhow::Result;
use ferry_core::control::local::{Client, ClientError, Heard};
use ferry_core::control::{Caller, Command, Engine, Reply};
use ferry_core::{Event, Node};
use tokio::sync::{broadcast, Mutex};

pub enum Front {
    /// A node runs here already; this process is one of its front ends.
    Attached(Client),
    /// This process runs the node.
    Own {
        node: Box<Node>,
        events: Mutex<broadcast::Receiver<Event>>,
    },
    /// No node runs: the data dir's libraries and stored transfers.
    Offline(Engine),
}

impl Front {
    pub fn own(node: Node) -> Front {
        let events = Mutex::new(node.subscribe());
        Front::Own {
            node: Box::new(node),
            events,
        }
    }

    pub fn attached(&self) -> bool {
        matches!(self, Front::Attached(_))
    }

    /// Runs a command; a refusal is an error that says why.
    pub async fn call(&self, command: Command) -> Result<Reply> {
        Ok(match self {
            Front::Attached(c) => c.call(command).await.map_err(|e| match e {
                ClientError::Refused(r) => anyhow::Error::from(r),
                e => anyhow::Error::from(e).context("the running node"),
            })?,
            Front::Own { node, .. } => node.execute(command).await?,
            Front::Offline(engine) => engine.execute(Caller::Local, command).await?,
        })
    }

    /// The next thing the node says (an event, a lag, or its end).
    pub async fn next(&self) -> Heard {
        match self {
            Front::Attached(c) => c.next().await,
            Front::Own { events, .. } => match events.lock().await.recv().await {
                Ok(e) => Heard::Event(Box::new(e)),
                Err(broadcast::error::RecvError::Lagged(n)) => Heard::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => {
                    Heard::Closed("the node stopped".into())
                }
            },
            Front::Offline(_) => std::future::pending().await,
        }
    }

    /// The next event, skipping lags (callers that follow one thing re-read it on their own).
    pub async fn event(&self) -> Option<Event> {
        loop {
            match self.next().await {
                Heard::Event(e) => return Some(*e),
                Heard::Lagged(n) => tracing::warn!(n, "missed events"),
                Heard::Closed(why) => {
                    tracing::info!(%why, "session ended");
                    return None;
                }
            }
        }
    }

    /// Stops what this process started (a node of its own says goodbye to its peers).
    pub async fn close(self) {
        if let Front::Own { node, .. } = self {
            node.shutdown().await;
        }
    }
}
