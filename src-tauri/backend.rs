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
            Backend::Attached(_) => None,
        }
    }

    /// The next event (`None` once the node stopped or the session ended).
    pub async fn next(
        &self,
        own: &mut Option<tokio::sync::broadcast::Receiver<Event>>,
    ) -> Option<Event> {
        loop {
            match (self, own.as_mut()) {
                (Backend::Own(_), Some(rx)) => match rx.recv().await {
                    Ok(e) => return Some(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(n, "UI missed events")
                    }
                    Err(_) => return None,
                },
                (Backend::Attached(c), _) => match c.next().await {
                    Heard::Event(e) => return Some(*e),
                    Heard::Lagged(n) => tracing::warn!(n, "UI missed events"),
                    Heard::Closed(why) => {
                        tracing::warn!(%why, "the node this app attached to is gone");
                        return None;
                    }
                },
                (Backend::Own(_), None) => return None,
            }
        }
    }

    /// A receiver of the events of a node of this process (subscribed now, before any call).
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Event>> {
        self.own().map(|n| n.subscribe())
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
