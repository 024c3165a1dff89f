//! The sending side: hyper's HTTP/1.1 client over rustls (or plain TCP for devices that have
//! encryption off).
//!
//! The receiver's certificate is self-signed, so it is not checked against any authority;
//! when we know the fingerprint a device announced, the certificate it shows must have it
//! ([`ClientError::FingerprintMismatch`]), checked after the handshake and before any request
//! byte is written. Files go over [`SendOptions::parallel`] connections at once (the spec allows
//! parallel uploads), each file as one `upload` request with its exact length.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

use crate::server::API;
use crate::tls::{Identity, TlsError};
use crate::wire::{self, DeviceInfo, FileInfo, PrepareUploadResponse, Protocol, WireError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a receiver may take to answer (its user decides meanwhile).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// An upload whose bytes stop moving for this long is given up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const CHUNK: usize = 256 << 10;
/// Files up to this size are read whole instead of streamed.
const SMALL_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("{addr} showed certificate {got}, not the {expected} it announced")]
    FingerprintMismatch {
        addr: SocketAddr,
        expected: String,
        got: String,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("the receiver requires a PIN")]
    PinRequired,
    #[error("the receiver declined")]
    Rejected,
    #[error("the receiver is busy with another transfer")]
    Busy,
    #[error("too many attempts; the receiver refuses for a while")]
    TooManyRequests,
    #[error("the receiver cancelled (HTTP {0})")]
    PeerCancelled(u16),
    #[error("the receiver answered HTTP {0}: {1}")]
    Status(u16, String),
    #[error("the receiver's answer: {0}")]
    Wire(#[from] WireError),
    #[error("answer too large")]
    TooLarge,
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cancelled")]
    Cancelled,
}

/// Where a device listens, and the fingerprint its certificate must have, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub fingerprint: Option<String>,
}

impl From<&crate::devices::Device> for Target {
    fn from(d: &crate::devices::Device) -> Target {
        Target {
            addr: d.addr,
            protocol: d.protocol,
            fingerprint: (d.protocol == Protocol::Https).then(|| d.fingerprint.clone()),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type ReqBody = BoxBody<Bytes, std::io::Error>;

/// One HTTP/1.1 connection (kept alive for several requests).
struct Conn {
    send: hyper::client::conn::http1::SendRequest<ReqBody>,
    host: String,
    /// The certificate fingerprint the peer showed (HTTPS).
    fingerprint: Option<String>,
}

/// A file to send: its name as the receiver sees it ("folder/sub/a.jpg") and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub pin: Option<String>,
    /// Uploads at once.
    pub parallel: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            pin: None,
            parallel: 4,
        }
    }
}

/// Counters a front end reads while a send runs.
#[derive(Debug, Default)]
pub struct SendProgress {
    pub bytes_done: AtomicU64,
    pub files_done: AtomicUsize,
    /// Set once the receiver accepted (0 before).
    pub accepted: AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Every accepted file arrived; `skipped` were declined by the receiver (or it had them).
    Sent { files: usize, skipped: usize },
}

#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    info: DeviceInfo,
}

impl Client {
    /// A client that introduces itself with `info` (the fingerprint is set from `identity`).
    pub fn new(identity: &Identity, mut info: DeviceInfo) -> Result<Client, TlsError> {
        info.fingerprint = identity.fingerprint();
        info.announce = None;
        Ok(Client {
            tls: tokio_rustls::TlsConnector::from(identity.client_config()?),
            info,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn connect(&self, t: &Target) -> Result<Conn, ClientError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(t.addr))
            .await
            .map_err(|_| ClientError::Timeout("connect"))?
            .map_err(|e| ClientError::Connect(t.addr, e))?;
        let _ = tcp.set_nodelay(true);
        let (io, fingerprint): (Box<dyn Io>, _) = match t.protocol {
            Protocol::Http => (Box::new(tcp), None),
            Protocol::Https => {
                // The certificate names nobody; any name does for SNI.
                let name = rustls::pki_types::ServerName::try_from("localsend")
                    .map_err(|e| ClientError::Tls(t.addr, std::io::Error::other(e)))?;
                let tls = tokio::time::timeout(TLS_TIMEOUT, self.tls.connect(name, tcp))
                    .await
                    .map_err(|_| ClientError::Timeout("TLS handshake"))?
                    .map_err(|e| ClientError::Tls(t.addr, e))?;
                let got = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| crate::tls::fingerprint(c))
                    .ok_or_else(|| {
                        ClientError::Tls(t.addr, std::io::Error::other("no certificate"))
                    })?;
                if let Some(expected) = &t.fingerprint {
                    if !crate::tls::same_fingerprint(expected, &got) {
                        return Err(ClientError::FingerprintMismatch {
                            addr: t.addr,
                            expected: expected.clone(),
                            got,
                        });
                    }
                }
                (Box::new(tls), Some(got))
            }
        };
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "localsend client: connection ended");
            }
        });
        Ok(Conn {
            send,
            host: t.addr.to_string(),
            fingerprint,
        })
    }

    fn request(conn: &Conn, path_and_query: &str, body: ReqBody, len: u64) -> Request<ReqBody> {
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path_and_query.parse().unwrap_or_default();
        let h = req.headers_mut();
        if let Ok(v) = header::HeaderValue::from_str(&conn.host) {
            h.insert(header::HOST, v);
        }
        h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
        req
    }

    async fn post_json(
        &self,
        conn: &mut Conn,
        path: &str,
        json: Vec<u8>,
        max_answer: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let len = json.len() as u64;
        let body = Full::new(Bytes::from(json)).map_err(|n| match n {}).boxed();
        let req = Self::request(conn, path, body, len);
        let run = async {
            conn.send.ready().await?;
            let resp = conn.send.send_request(req).await?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max_answer)
                .collect()
                .await
                .map_err(|_| ClientError::TooLarge)?
                .to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| ClientError::Timeout("answer"))?
    }

    /// `POST register`: introduces us and returns the device's description, with the
    /// fingerprint its certificate showed (HTTPS).
    pub async fn register(&self, t: &Target) -> Result<(DeviceInfo, Option<String>), ClientError> {
        let mut conn = self.connect(t).await?;
        let body = serde_json::to_vec(&self.info).unwrap_or_default();
        let path = format!("{API}register");
        let (status, answer) = self
            .post_json(&mut conn, &path, body, wire::MAX_INFO_BODY, ANSWER_TIMEOUT)
            .await?;
        if status != StatusCode::OK {
            return Err(ClientError::Status(status.as_u16(), text(&answer)));
        }
        Ok((wire::decode_device_info(&answer)?, conn.fingerprint))
    }

    /// Offers `files`. `Ok(None)`: the receiver needs none of them (204).
    pub async fn prepare_upload(
        &self,
        t: &Target,
        pin: Option<&str>,
        files: &[FileInfo],
    ) -> Result<Option<PrepareUploadResponse>, ClientError> {
        let mut conn = self.connect(t).await?;
        let body = serde_json::to_vec(&wire::PrepareUpload {
            info: self.info.clone(),
            files: files.to_vec(),
        })
        .unwrap_or_default();
        let mut path = format!("{API}prepare-upload");
        if let Some(pin) = pin {
            path.push_str(&format!("?pin={}", wire::percent_encode(pin)));
        }
        let (status, answer) = self
            .post_json(
                &mut conn,
                &path,
                body,
                wire::MAX_PREPARE_BODY,
                ANSWER_TIMEOUT,
            )
            .await?;
        match status.as_u16() {
            200 => Ok(Some(wire::decode_prepare_response(&answer)?)),
            204 => Ok(None),
            401 => Err(ClientError::PinRequired),
            403 => Err(ClientError::Rejected),
            409 => Err(ClientError::Busy),
            429 => Err(ClientError::TooManyRequests),
            s => Err(ClientError::Status(s, text(&answer))),
        }
    }

    /// `POST cancel`.
    pub async fn cancel(&self, t: &Target, session: &str) -> Result<(), ClientError> {
        let mut conn = self.connect(t).await?;
        let path = format!("{API}cancel?sessionId={}", wire::percent_encode(session));
        let (status, answer) = self
            .post_json(
                &mut conn,
                &path,
                vec![],
                wire::MAX_INFO_BODY,
                CONNECT_TIMEOUT,
            )
            .await?;
        match status.as_u16() {
            200 | 204 => Ok(()),
            s => Err(ClientError::Status(s, text(&answer))),
        }
    }

    /// One `upload`, on an open connection.
    async fn upload_on(
        conn: &mut Conn,
        session: &str,
        file_id: &str,
        token: &str,
        file: &LocalFile,
        progress: &SendProgress,
    ) -> Result<(), ClientError> {
        let io = |e| ClientError::Io(file.path.clone(), e);
        let sent = Arc::new(AtomicU64::new(0));
        let body: ReqBody = if file.size <= SMALL_FILE {
            let data = tokio::fs::read(&file.path).await.map_err(io)?;
            if data.len() as u64 != file.size {
                return Err(io(std::io::Error::other("the file changed size")));
            }
            sent.store(file.size, Ordering::Relaxed);
            Full::new(Bytes::from(data)).map_err(|n| match n {}).boxed()
        } else {
            FileBody::spawn(file.path.clone(), file.size, sent.clone()).boxed()
        };
        let path = format!(
            "{API}upload?sessionId={}&fileId={}&token={}",
            wire::percent_encode(session),
            wire::percent_encode(file_id),
            wire::percent_encode(token)
        );
        let req = Self::request(conn, &path, body, file.size);
        conn.send.ready().await?;
        let resp = conn.send.send_request(req);
        tokio::pin!(resp);
        // A watchdog: the request fails if its bytes stop moving.
        let mut last = 0;
        let mut still = Duration::ZERO;
        let tick = Duration::from_millis(500);
        let resp = loop {
            tokio::select! {
                r = &mut resp => break r?,
                _ = tokio::time::sleep(tick) => {
                    let now = sent.load(Ordering::Relaxed);
                    still = if now == last { still + tick } else { Duration::ZERO };
                    if still >= STALL_TIMEOUT {
                        return Err(ClientError::Timeout("upload stalled"));
                    }
                    progress.bytes_done.fetch_add(now - last, Ordering::Relaxed);
                    last = now;
                }
            }
        };
        let status = resp.status();
        let answer = Limited::new(resp.into_body(), wire::MAX_INFO_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        progress
            .bytes_done
            .fetch_add(sent.load(Ordering::Relaxed) - last, Ordering::Relaxed);
        match status.as_u16() {
            200 | 204 => Ok(()),
            403 | 409 | 410 => Err(ClientError::PeerCancelled(status.as_u16())),
            s => Err(ClientError::Status(s, text(&answer))),
        }
    }

    /// Sends `files` to `t`: offers them, waits for the answer, uploads every accepted one.
    /// Setting `cancel` to true stops it and tells the receiver.
    pub async fn send(
        &self,
        t: &Target,
        files: Vec<LocalFile>,
        opts: SendOptions,
        progress: Arc<SendProgress>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<SendOutcome, ClientError> {
        let infos: Vec<FileInfo> = files
            .iter()
            .enumerate()
            .map(|(i, f)| FileInfo {
                id: i.to_string(),
                file_name: f.name.clone(),
                size: f.size,
                file_type: "application/octet-stream".into(),
                sha256: None,
                metadata: None,
            })
            .collect();
        let prepared = tokio::select! {
            r = self.prepare_upload(t, opts.pin.as_deref(), &infos) => r?,
            _ = cancelled(&mut cancel) => return Err(ClientError::Cancelled),
        };
        let Some(prepared) = prepared else {
            return Ok(SendOutcome::Sent {
                files: 0,
                skipped: files.len(),
            });
        };
        let mut jobs = Vec::new();
        for (i, f) in files.into_iter().enumerate() {
            let id = i.to_string();
            if let Some((_, token)) = prepared.files.iter().find(|(k, _)| *k == id) {
                jobs.push((id, token.clone(), f));
            }
        }
        let skipped = infos.len() - jobs.len();
        progress
            .accepted
            .store(jobs.len().max(1), Ordering::Relaxed);
        let jobs = Arc::new(jobs);
        let next = Arc::new(AtomicUsize::new(0));
        let session = Arc::new(prepared.session_id);
        let workers = opts.parallel.clamp(1, 16).min(jobs.len().max(1));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (jobs, next, session, progress) = (
                jobs.clone(),
                next.clone(),
                session.clone(),
                progress.clone(),
            );
            let (client, t) = (self.clone(), t.clone());
            set.spawn(async move {
                let mut conn: Option<Conn> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, token, file)) = jobs.get(i) else {
                        return Ok::<(), ClientError>(());
                    };
                    if conn.as_ref().is_none_or(|c| c.send.is_closed()) {
                        conn = Some(client.connect(&t).await?);
                    }
                    let c = conn.as_mut().ok_or(ClientError::Cancelled)?;
                    Client::upload_on(c, &session, id, token, file, &progress).await?;
                    progress.files_done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut failure = None;
        loop {
            tokio::select! {
                r = set.join_next() => match r {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => { failure = Some(e); break; }
                    Some(Err(e)) => { failure = Some(ClientError::Io(PathBuf::new(), std::io::Error::other(e))); break; }
                },
                _ = cancelled(&mut cancel) => { failure = Some(ClientError::Cancelled); break; }
            }
        }
        if let Some(e) = failure {
            // Cancel before dropping the uploads, so that the receiver hears "cancelled" before
            // it sees connections break (which it may record as a failure instead).
            if !matches!(e, ClientError::PeerCancelled(_)) {
                if let Err(c) = self.cancel(t, &session).await {
                    tracing::debug!(error = %c, "localsend client: cancel not delivered");
                }
            }
            set.abort_all();
            return Err(e);
        }
        Ok(SendOutcome::Sent {
            files: jobs.len(),
            skipped,
        })
    }
}

/// Resolves once `cancel` is set; never, if its sender is gone without setting it.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(512)]);
    wire::displayable(&s)
}

/// A file's bytes, read on a blocking thread, with its exact length.
struct FileBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl FileBody {
    fn spawn(path: PathBuf, size: u64, sent: Arc<AtomicU64>) -> FileBody {
        let (tx, rx) = mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let mut left = size;
            while left > 0 {
                let mut buf = vec![0u8; CHUNK.min(left as usize)];
                match f.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Err(std::io::Error::other("the file shrank")));
                        return;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        FileBody {
            rx,
            remaining: size,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.remaining = self.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other("file reader ended")))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The files under `roots` (folders walked; empty folders cannot be sent over LocalSend).
pub fn collect(roots: &[PathBuf]) -> Result<Vec<LocalFile>, ferry_block::manifest::CollectError> {
    let c = ferry_block::manifest::collect(roots)?;
    Ok(c.manifest
        .entries
        .iter()
        .zip(c.sources)
        .filter(|(e, _)| e.kind == ferry_block::manifest::EntryKind::File)
        .map(|(e, path)| LocalFile {
            name: e.path.join("/"),
            path,
            size: e.size,
        })
        .collect())
}
