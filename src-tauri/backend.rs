//! The node behind the app: its own (in this process), or one already running on the data dir
//! (`ferry node` as a service, say) that the app attached to over its socket. Either way the
//! app speaks to it through the one command surface (`ferry_core::control`).

use std::sync::Arc;

use ferry_core::control::local::{Client, ClientError, Heard};
use ferry_core::control::{Command, Reply};
use ferry_core::{Event, Node};

#[derive(Clone)]
pub enum Backend {
    Own(Arc<Node>),
    Attached(Arc<Client>),
    /// Between two nodes of this process (settings changed what only a restart changes).
    Restarting,
}

impl Backend {
    /// Runs a command; errors reach the UI as readable strings.
    pub async fn run(&self, command: Command) -> Result<Reply, String> {
        match self {
            Backend::Own(node) => node.execute(command).await.map_err(|e| e.to_string()),
            Backend::Attached(client) => client.call(command).await.map_err(|e| match e {
                ClientError::Refused(r) => r.to_string(),
                e => format!("the Ferry node running here: {e}"),
            }),
            Backend::Restarting => Err("the node is restarting".into()),
        }
    }

    /// A `ferry://` answer (`thumb/LIB/CONTENT`, `file/LIB/ENTRY`): status, headers, body.
    /// The engine decides it; a node that cannot be asked is a 503.
    pub async fn media(&self, path: &str, range: Option<String>, head: bool) -> MediaAnswer {
        let ask = Command::Media {
            path: path.to_string(),
            range,
            head,
        };
        match self.run(ask).await {
            Ok(Reply::Media {
                status,
                headers,
                body,
            }) => MediaAnswer {
                status,
                headers,
                body: body.0,
            },
            Ok(_) => MediaAnswer::unavailable("unexpected answer from the node"),
            Err(e) => MediaAnswer::unavailable(&e),
        }
    }

    /// The node of this process, if it is one.
    pub fn own(&self) -> Option<&Arc<Node>> {
        match self {
            Backend::Own(node) => Some(node),
            Backend::Attached(_) | Backend::Restarting => None,
        }
    }

    /// The node's events from now on. Holds no node: a node replaced by a restart is not kept
    /// alive by the task that forwarded its events.
    pub fn events(&self) -> Events {
        match self {
            Backend::Own(node) => Events::Own(node.subscribe()),
            Backend::Attached(client) => Events::Attached(client.clone()),
            Backend::Restarting => Events::None,
        }
    }
}

pub enum Events {
    Own(tokio::sync::broadcast::Receiver<Event>),
    Attached(Arc<Client>),
    None,
}

impl Events {
    /// The next event (`None` once the node stopped or the session ended).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self {
                Events::Own(rx) => match rx.recv().await {
                    Ok(e) => return Some(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(n, "UI missed events")
                    }
                    Err(_) => return None,
                },
                Events::Attached(c) => match c.next().await {
                    Heard::Event(e) => return Some(*e),
                    Heard::Lagged(n) => tracing::warn!(n, "UI missed events"),
                    Heard::Closed(why) => {
                        tracing::warn!(%why, "the node this app attached to is gone");
                        return None;
                    }
                },
                Events::None => return None,
            }
        }
    }
}

pub struct MediaAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MediaAnswer {
    fn unavailable(why: &str) -> MediaAnswer {
        MediaAnswer {
            status: 503,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: why.as_bytes().to_vec(),
        }
    }
}

/// Unwraps the reply a command must give, or says what came instead.
macro_rules! expect_reply {
    ($reply:expr, $pat:pat => $out:expr) => {
        match $reply {
            $pat => Ok($out),
            _ => Err("unexpected answer from the node".to_string()),
        }
    };
}
pub(crate) use expect_reply;
