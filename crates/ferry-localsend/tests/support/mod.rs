//! Shared by the LocalSend tests: a receiver on loopback whose offers a test answers, and a
//! scripted HTTPS client that sends whatever a test asks, from any loopback address.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferry_localsend::server::{Answer, ServerEvent};
use ferry_localsend::{device_info, Client, DeviceType, Devices, Identity, Server, ServerConfig};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// How a test receiver answers offers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    Accept,
    Reject,
    /// Never answer (the offer stays open).
    Hold,
}

pub struct Receiver {
    pub server: Server,
    pub dest: tempfile::TempDir,
    pub addr: SocketAddr,
    /// Every event but progress, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    pub events: mpsc::UnboundedReceiver<ServerEvent>,
    pub devices: Arc<Devices>,
}

pub async fn receiver(policy: Policy, tweak: impl FnOnce(&mut ServerConfig)) -> Receiver {
    let id = Identity::generate().unwrap();
    let mut cfg = ServerConfig::new(device_info("ferry-test", DeviceType::Headless));
    tweak(&mut cfg);
    let devices = Arc::new(Devices::new(64));
    let (server, mut rx) = Server::bind("127.0.0.1:0".parse().unwrap(), &id, cfg, devices.clone())
        .await
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_path_buf();
    let seen = Arc::new(Mutex::new(vec![]));
    let (tx, events) = mpsc::unbounded_channel();
    let s = seen.clone();
    let mut held = vec![];
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            match e {
                ServerEvent::Offer(o) => {
                    s.lock()
                        .unwrap()
                        .push(format!("offer {}", o.offer.files.len()));
                    match policy {
                        Policy::Accept => {
                            let _ = o.reply.send(Answer::Accept { dest: d.clone() });
                        }
                        Policy::Reject => {
                            let _ = o.reply.send(Answer::Reject);
                        }
                        Policy::Hold => held.push(o.reply),
                    }
                }
                ServerEvent::Progress { .. } => {}
                other => {
                    s.lock().unwrap().push(describe(&other));
                    let _ = tx.send(other);
                }
            }
        }
    });
    let addr = server.local_addr();
    Receiver {
        server,
        dest,
        addr,
        seen,
        events,
        devices,
    }
}

pub fn describe(e: &ServerEvent) -> String {
    match e {
        ServerEvent::Refused { route, status, .. } => format!("refused {route} {status}"),
        ServerEvent::Started { .. } => "started".into(),
        ServerEvent::FileDone { entry, .. } => format!("done {entry}"),
        ServerEvent::FileFailed { entry, reason, .. } => format!("failed {entry}: {reason}"),
        ServerEvent::Ended { end, .. } => format!("ended {end:?}"),
        ServerEvent::Offer(_) => "offer".into(),
        ServerEvent::Progress { .. } => "progress".into(),
    }
}

impl Receiver {
    /// Waits for the next event matching `f` (others are skipped), at most 20 s.
    pub async fn expect(&mut self, what: &str, f: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if f(&e) => return e,
                Ok(Some(_)) => continue,
                _ => panic!("no {what} event; seen: {:?}", self.seen.lock().unwrap()),
            }
        }
    }

    /// Every path under the destination, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut out = vec![];
        walk(self.dest.path(), self.dest.path(), &mut out);
        out.sort();
        out
    }
}

pub fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        if p.is_dir() {
            walk(root, &p, out);
        }
    }
}

pub fn client() -> Client {
    Client::new(
        &Identity::generate().unwrap(),
        device_info("sender", DeviceType::Mobile),
    )
    .unwrap()
}

pub fn target(addr: SocketAddr) -> ferry_localsend::Target {
    ferry_localsend::Target {
        addr,
        protocol: ferry_localsend::Protocol::Https,
        fingerprint: None,
    }
}

/// A request body a test scripts: chunks from a channel, with a declared length or none.
pub struct ChanBody {
    pub rx: mpsc::Receiver<Bytes>,
    pub exact: Option<u64>,
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

pub type Raw = BoxBody<Bytes, std::io::Error>;

pub fn bytes(b: impl Into<Bytes>) -> Raw {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

/// A scripted HTTPS request from `from` (any 127.x address), as a hostile client would send
/// it. Returns the status and body, or the error (the server may close the connection).
pub async fn raw(
    addr: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Raw,
) -> Result<(u16, String), String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(from, 0))
        .map_err(|e| e.to_string())?;
    let tcp = sock.connect(addr).await.map_err(|e| e.to_string())?;
    let id = Identity::generate().unwrap();
    let tls = tokio_rustls::TlsConnector::from(id.client_config().unwrap());
    let name = rustls::pki_types::ServerName::try_from("localsend").unwrap();
    let tls = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

pub fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// A JSON prepare-upload body for `files` (name, size).
pub fn prepare_body(files: &[(&str, u64)]) -> String {
    let mut m = serde_json::Map::new();
    for (i, (name, size)) in files.iter().enumerate() {
        m.insert(
            i.to_string(),
            serde_json::json!({"id": i.to_string(), "fileName": name, "size": size, "fileType": "x"}),
        );
    }
    serde_json::json!({
        "info": {"alias": "hostile", "version": "2.1", "deviceType": "mobile", "fingerprint": "F00", "port": 53317, "protocol": "https"},
        "files": m,
    })
    .to_string()
}

/// Resident memory of this process, in bytes.
pub fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn temp_file(dir: &std::path::Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, data).unwrap();
    p
}
