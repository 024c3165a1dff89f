//! The receiving side: the HTTPS server on TCP 53317 (hyper over rustls).
//!
//! Routes: `GET info`, `POST register`, `POST prepare-upload` (PIN, one session at a time),
//! `POST upload` (session, token and sender address checked), `POST cancel`. Each refusal is
//! answered with the spec's status, logged, and reported as [`ServerEvent::Refused`].
//!
//! Files are written to a temp name in the destination (`.ferry-ls-….part`, created new), their
//! length checked against the declared size as they arrive (one byte over and the file is
//! refused), their SHA-256 checked when the sender gave one, and only then placed with
//! `ferry_block::place::place` under the name `ferry_block::place::layout` chose at accept
//! time: never replacing anything. When the session ends, every placed file is made durable
//! with one `sync_batch` before [`SessionEnd::Done`] is reported.

use ferry_util::lock;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_block::names::Os;
use ferry_block::place::Layout;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::devices::{Device, Devices};
use crate::offer::{Offer, OfferError};
use crate::tls::Identity;
use crate::wire::{self, DeviceInfo, PrepareUploadResponse};

pub const API: &str = "/api/localsend/v2/";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What we tell others about ourselves (the fingerprint is set from the certificate).
    pub info: DeviceInfo,
    /// A PIN senders must give (`?pin=`), if any.
    pub pin: Option<String>,
    /// An unanswered offer is refused (403) after this long.
    pub prompt_timeout: Duration,
    /// An upload that sends nothing for this long fails.
    pub stall_timeout: Duration,
    /// A session with no upload activity for this long ends as failed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl ServerConfig {
    pub fn new(info: DeviceInfo) -> ServerConfig {
        ServerConfig {
            info,
            pin: None,
            prompt_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 64,
        }
    }
}

/// Wrong PINs from one address before it is refused with 429 for [`PIN_LOCKOUT`].
pub const PIN_ATTEMPTS: u32 = 3;
pub const PIN_LOCKOUT: Duration = Duration::from_secs(60);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Addresses whose PIN failures are remembered.
const MAX_PIN_RECORDS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What the server asks and tells its owner.
#[derive(Debug)]
pub enum ServerEvent {
    /// A sender asks to send; answer on `reply` (dropping it refuses).
    Offer(IncomingOffer),
    /// An accepted session's files: where each goes, relative to `dest`.
    Started {
        session: String,
        dest: PathBuf,
        layout: Arc<Layout>,
    },
    Progress {
        session: String,
        bytes_done: u64,
        files_done: usize,
    },
    FileDone {
        session: String,
        entry: u32,
        path: PathBuf,
        size: u64,
    },
    FileFailed {
        session: String,
        entry: u32,
        reason: String,
    },
    Ended {
        session: String,
        end: SessionEnd,
    },
    /// A request refused (also logged).
    Refused {
        from: SocketAddr,
        route: &'static str,
        status: u16,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    Done,
    Failed(String),
    Cancelled { by_peer: bool },
}

#[derive(Debug)]
pub struct IncomingOffer {
    pub session: String,
    pub from: SocketAddr,
    pub info: DeviceInfo,
    /// The fingerprint of the certificate the sender showed, if it showed one: proven by the
    /// handshake. Without it, `info.fingerprint` is only what the sender claims.
    pub cert_fingerprint: Option<String>,
    pub offer: Arc<Offer>,
    pub bytes: u64,
    pub reply: oneshot::Sender<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept { dest: PathBuf },
    Reject,
}

/// A running server. Dropping it stops accepting connections.
pub struct Server {
    state: Arc<State>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        self.state.cancel_all(false);
    }
}

struct State {
    cfg: Mutex<ServerConfig>,
    events: mpsc::Sender<ServerEvent>,
    devices: Arc<Devices>,
    slot: Mutex<Slot>,
    pin_failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    next_claim: AtomicU64,
}

enum Slot {
    Idle,
    /// An offer being decoded or waiting for its answer.
    Asking {
        claim: u64,
    },
    Active(Arc<Session>),
}

struct Session {
    id: String,
    sender: IpAddr,
    dest: PathBuf,
    layout: Arc<Layout>,
    files: HashMap<String, FileSlot>,
    total: usize,
    ended: AtomicUsize,
    failed: AtomicUsize,
    bytes_done: AtomicU64,
    placed: Mutex<Vec<PathBuf>>,
    cancel: watch::Sender<bool>,
    last_activity: Mutex<Instant>,
    last_progress: Mutex<Instant>,
    finished: AtomicBool,
}

struct FileSlot {
    entry: u32,
    token: String,
    size: u64,
    sha256: Option<[u8; 32]>,
    state: Mutex<FileState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    Waiting,
    Receiving,
    Ended,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    crate::tls::hex_upper(&b).to_ascii_lowercase()
}

/// Constant-time string equality (tokens, PINs).
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Server {
    /// Binds `addr` (TCP) and serves. Events arrive on the returned receiver; the owner must
    /// keep reading it.
    pub async fn bind(
        addr: SocketAddr,
        identity: &Identity,
        mut cfg: ServerConfig,
        devices: Arc<Devices>,
    ) -> Result<(Server, mpsc::Receiver<ServerEvent>), ServerError> {
        let tls = tokio_rustls::TlsAcceptor::from(identity.server_config()?);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind(addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::Bind(addr, e))?;
        cfg.info.fingerprint = identity.fingerprint();
        cfg.info.protocol = Some(wire::Protocol::Https);
        cfg.info.port.get_or_insert(local.port());
        cfg.info.announce = None;
        devices.set_own(&cfg.info.fingerprint);
        let (tx, rx) = mpsc::channel(1024);
        let conns = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
        let state = Arc::new(State {
            cfg: Mutex::new(cfg),
            events: tx,
            devices,
            slot: Mutex::new(Slot::Idle),
            pin_failures: Mutex::default(),
            next_claim: AtomicU64::new(1),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "localsend: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = conns.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "localsend: too many connections, closing one");
                    continue;
                };
                let (st, tls) = (st.clone(), tls.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_connection(st, tls, tcp, peer).await;
                });
            }
        });
        Ok((
            Server {
                state,
                addr: local,
                task,
            },
            rx,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Our own description as we serve it (fingerprint and port filled in).
    pub fn info(&self) -> DeviceInfo {
        lock(&self.state.cfg).info.clone()
    }

    pub fn set_pin(&self, pin: Option<String>) {
        lock(&self.state.cfg).pin = pin;
        lock(&self.state.pin_failures).clear();
    }

    /// Cancels the running session `id` from this side. Returns whether there was one.
    pub fn cancel(&self, id: &str) -> bool {
        let session = match &*lock(&self.state.slot) {
            Slot::Active(s) if s.id == id => Some(s.clone()),
            _ => None,
        };
        match session {
            Some(s) => {
                self.state
                    .end_session(&s, SessionEnd::Cancelled { by_peer: false });
                true
            }
            None => false,
        }
    }

    /// The id of the running session, if one is.
    pub fn session(&self) -> Option<String> {
        match &*lock(&self.state.slot) {
            Slot::Active(s) => Some(s.id.clone()),
            _ => None,
        }
    }
}

async fn serve_connection(
    st: Arc<State>,
    tls: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "localsend: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "localsend: TLS handshake timed out");
            return;
        }
    };
    let cert_fp = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| crate::tls::fingerprint(c));
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let conn = Arc::new(ConnInfo { peer, cert_fp });
    let service = hyper::service::service_fn(move |req| {
        let (st, conn) = (st.clone(), conn.clone());
        async move { Ok::<_, Infallible>(route(st, conn, req).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 << 10)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "localsend: connection ended");
    }
}

struct ConnInfo {
    peer: SocketAddr,
    cert_fp: Option<String>,
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A refusal: its status and why (sent as `{"message": …}`, logged, reported).
struct Refusal(StatusCode, String);

impl Refusal {
    fn new(status: StatusCode, why: impl Into<String>) -> Refusal {
        Refusal(status, why.into())
    }
}

async fn route(st: Arc<State>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let Some(name) = path.strip_prefix(API) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (route, result) = match (req.method(), name) {
        (&Method::GET, "info") => ("info", Ok(st.info_json())),
        (&Method::POST, "register") => ("register", register(&st, &conn, req).await),
        (&Method::POST, "prepare-upload") => ("prepare-upload", prepare(&st, &conn, req).await),
        (&Method::POST, "upload") => ("upload", upload(&st, &conn, req).await),
        (&Method::POST, "cancel") => ("cancel", cancel(&st, &conn, req)),
        _ => return empty(StatusCode::NOT_FOUND),
    };
    match result {
        Ok(r) => r,
        Err(Refusal(status, reason)) => {
            tracing::warn!(from = %conn.peer, route, status = status.as_u16(), %reason, "localsend: refused");
            let _ = st.events.try_send(ServerEvent::Refused {
                from: conn.peer,
                route,
                status: status.as_u16(),
                reason: reason.clone(),
            });
            let body = serde_json::json!({ "message": reason }).to_string();
            json_response(status, body.into_bytes())
        }
    }
}

/// Reads a whole JSON body of at most `max` bytes, refusing larger ones from their declared
/// length (413 before reading anything) or as soon as they pass `max`.
async fn read_json(req: Request<Incoming>, max: usize, stall: Duration) -> Result<Bytes, Refusal> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes, at most {max} allowed",
                declared.unwrap_or(0)
            ),
        ));
    }
    let body = Limited::new(req.into_body(), max);
    match tokio::time::timeout(stall, body.collect()).await {
        Err(_) => Err(Refusal::new(StatusCode::REQUEST_TIMEOUT, "body too slow")),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {max} bytes"),
        )),
        Ok(Err(e)) => Err(Refusal::new(StatusCode::BAD_REQUEST, format!("body: {e}"))),
    }
}

impl State {
    fn info_json(&self) -> Resp {
        let info = lock(&self.cfg).info.clone();
        json_response(
            StatusCode::OK,
            serde_json::to_vec(&info).unwrap_or_default(),
        )
    }

    fn stall(&self) -> Duration {
        lock(&self.cfg).stall_timeout
    }

    fn check_pin(&self, ip: IpAddr, given: Option<&str>) -> Result<(), Refusal> {
        let Some(pin) = lock(&self.cfg).pin.clone() else {
            return Ok(());
        };
        let mut failures = lock(&self.pin_failures);
        let now = Instant::now();
        failures.retain(|_, (_, at)| now.duration_since(*at) < PIN_LOCKOUT);
        if failures.get(&ip).is_some_and(|(n, _)| *n >= PIN_ATTEMPTS) {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong PINs; try again later",
            ));
        }
        match given {
            None | Some("") => Err(Refusal::new(StatusCode::UNAUTHORIZED, "PIN required")),
            Some(p) if ct_eq(p, &pin) => {
                failures.remove(&ip);
                Ok(())
            }
            Some(_) => {
                if failures.len() < MAX_PIN_RECORDS || failures.contains_key(&ip) {
                    let e = failures.entry(ip).or_insert((0, now));
                    *e = (e.0 + 1, now);
                }
                Err(Refusal::new(StatusCode::UNAUTHORIZED, "invalid PIN"))
            }
        }
    }

    fn busy(&self) -> bool {
        !matches!(*lock(&self.slot), Slot::Idle)
    }

    /// Claims the one session slot for an offer being decided; None when taken.
    fn claim(self: &Arc<Self>) -> Option<Claim> {
        let mut slot = lock(&self.slot);
        if !matches!(*slot, Slot::Idle) {
            return None;
        }
        let claim = self.next_claim.fetch_add(1, Ordering::Relaxed);
        *slot = Slot::Asking { claim };
        Some(Claim {
            state: self.clone(),
            claim,
        })
    }

    async fn emit(&self, e: ServerEvent) {
        let _ = self.events.send(e).await;
    }

    /// Ends a session once: cancels its uploads, frees the slot, reports how it ended.
    fn end_session(&self, s: &Arc<Session>, end: SessionEnd) {
        if s.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = s.cancel.send(true);
        {
            let mut slot = lock(&self.slot);
            if matches!(&*slot, Slot::Active(a) if Arc::ptr_eq(a, s)) {
                *slot = Slot::Idle;
            }
        }
        tracing::info!(session = %s.id, ?end, "localsend: session ended");
        let ev = ServerEvent::Ended {
            session: s.id.clone(),
            end,
        };
        let tx = self.events.clone();
        tokio::spawn(async move {
            let _ = tx.send(ev).await;
        });
    }

    fn cancel_all(&self, by_peer: bool) {
        let s = match &*lock(&self.slot) {
            Slot::Active(s) => Some(s.clone()),
            _ => None,
        };
        if let Some(s) = s {
            self.end_session(&s, SessionEnd::Cancelled { by_peer });
        }
    }
}

/// The slot while an offer is decided; dropping it (refusal, a dropped connection) frees it.
struct Claim {
    state: Arc<State>,
    claim: u64,
}

impl Claim {
    fn activate(self, s: Arc<Session>) {
        let mut slot = lock(&self.state.slot);
        if matches!(*slot, Slot::Asking { claim } if claim == self.claim) {
            *slot = Slot::Active(s);
        }
        drop(slot);
        std::mem::forget(self);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut slot = lock(&self.state.slot);
        if matches!(*slot, Slot::Asking { claim } if claim == self.claim) {
            *slot = Slot::Idle;
        }
    }
}

async fn register(
    st: &Arc<State>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Resp, Refusal> {
    let body = read_json(req, wire::MAX_INFO_BODY, st.stall()).await?;
    let info = wire::decode_device_info(&body)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    st.devices.upsert(Device::from_info(
        &info,
        conn.peer.ip(),
        conn.cert_fp.as_deref(),
    ));
    Ok(st.info_json())
}

async fn prepare(
    st: &Arc<State>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Resp, Refusal> {
    let ip = conn.peer.ip();
    let q = wire::parse_query(req.uri().query())
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    st.check_pin(ip, q.pin.as_deref())?;
    // Refuse a second sender before reading what may be a 64 MiB body.
    if st.busy() {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "blocked by another session",
        ));
    }
    let body = read_json(req, wire::MAX_PREPARE_BODY, st.stall()).await?;
    // Decoding 250,000 files takes a while: off the async threads.
    let decoded = tokio::task::spawn_blocking(move || {
        let p = wire::decode_prepare_upload(&body).map_err(|e| e.to_string())?;
        let offer = match crate::offer::offer(&p) {
            Err(OfferError::Empty) => None,
            Err(e) => return Err(e.to_string()),
            Ok(o) => Some(o),
        };
        Ok((p.info, offer))
    })
    .await
    .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e))?;
    let (info, offer) = decoded;
    st.devices
        .upsert(Device::from_info(&info, ip, conn.cert_fp.as_deref()));
    let Some(offer) = offer else {
        return Ok(empty(StatusCode::NO_CONTENT));
    };
    let claim = st
        .claim()
        .ok_or_else(|| Refusal::new(StatusCode::CONFLICT, "blocked by another session"))?;
    let offer = Arc::new(offer);
    let session_id = random_hex(16);
    let (reply, answer) = oneshot::channel();
    let bytes = offer.manifest.total_bytes();
    st.emit(ServerEvent::Offer(IncomingOffer {
        session: session_id.clone(),
        from: conn.peer,
        info,
        cert_fingerprint: conn.cert_fp.clone(),
        offer: offer.clone(),
        bytes,
        reply,
    }))
    .await;
    let timeout = lock(&st.cfg).prompt_timeout;
    let dest = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(Answer::Accept { dest })) => dest,
        Ok(Ok(Answer::Reject)) | Ok(Err(_)) => {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "rejected"))
        }
        Err(_) => return Err(Refusal::new(StatusCode::FORBIDDEN, "no answer in time")),
    };
    let (dest2, offer2) = (dest.clone(), offer.clone());
    let layout = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dest2)?;
        ferry_block::place::layout(&offer2.manifest, Os::current(), |n| dest2.join(n).exists())
            .map_err(std::io::Error::other)
    })
    .await
    .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let layout = Arc::new(layout);
    let files: HashMap<String, FileSlot> = offer
        .files
        .iter()
        .map(|f| {
            let slot = FileSlot {
                entry: f.entry,
                token: random_hex(16),
                size: f.size,
                sha256: f.sha256,
                state: Mutex::new(FileState::Waiting),
            };
            (f.id.clone(), slot)
        })
        .collect();
    let tokens = PrepareUploadResponse {
        session_id: session_id.clone(),
        files: offer
            .files
            .iter()
            .filter_map(|f| Some((f.id.clone(), files.get(&f.id)?.token.clone())))
            .collect(),
    };
    let now = Instant::now();
    let session = Arc::new(Session {
        id: session_id.clone(),
        sender: ip,
        dest: dest.clone(),
        layout: layout.clone(),
        total: files.len(),
        files,
        ended: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        bytes_done: AtomicU64::new(0),
        placed: Mutex::default(),
        cancel: watch::channel(false).0,
        last_activity: Mutex::new(now),
        last_progress: Mutex::new(now),
        finished: AtomicBool::new(false),
    });
    claim.activate(session.clone());
    st.emit(ServerEvent::Started {
        session: session_id,
        dest,
        layout,
    })
    .await;
    spawn_reaper(st.clone(), session);
    let body = serde_json::to_vec(&tokens)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_response(StatusCode::OK, body))
}

/// Ends a session nobody uploads to any more.
fn spawn_reaper(st: Arc<State>, s: Arc<Session>) {
    let idle = lock(&st.cfg).idle_timeout;
    tokio::spawn(async move {
        let mut cancel = s.cancel.subscribe();
        loop {
            tokio::select! {
                _ = cancel.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if s.finished.load(Ordering::SeqCst) {
                return;
            }
            if lock(&s.last_activity).elapsed() > idle {
                st.end_session(&s, SessionEnd::Failed("the sender stopped sending".into()));
                return;
            }
        }
    });
}

fn active_session(st: &State, id: &str) -> Option<Arc<Session>> {
    match &*lock(&st.slot) {
        Slot::Active(s) if s.id == id => Some(s.clone()),
        _ => None,
    }
}

fn cancel(st: &Arc<State>, conn: &ConnInfo, req: Request<Incoming>) -> Result<Resp, Refusal> {
    let q = wire::parse_query(req.uri().query())
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let id = q
        .session_id
        .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "missing sessionId"))?;
    let s = active_session(st, &id)
        .filter(|s| s.sender == conn.peer.ip())
        .ok_or_else(|| Refusal::new(StatusCode::FORBIDDEN, "no such session from this address"))?;
    st.end_session(&s, SessionEnd::Cancelled { by_peer: true });
    Ok(empty(StatusCode::OK))
}

async fn upload(st: &Arc<State>, conn: &ConnInfo, req: Request<Incoming>) -> Result<Resp, Refusal> {
    let q = wire::parse_query(req.uri().query())
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (Some(sid), Some(fid), Some(token)) = (q.session_id, q.file_id, q.token) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "missing parameters"));
    };
    let forbidden = |why: &str| Refusal::new(StatusCode::FORBIDDEN, why.to_string());
    let s = active_session(st, &sid).ok_or_else(|| forbidden("no such session"))?;
    if s.sender != conn.peer.ip() {
        return Err(forbidden(
            "upload from another address than the session's sender",
        ));
    }
    let slot = s.files.get(&fid).ok_or_else(|| forbidden("no such file"))?;
    if !ct_eq(&slot.token, &token) {
        return Err(forbidden("invalid token"));
    }
    {
        let mut state = lock(&slot.state);
        if *state != FileState::Waiting {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "file already received or receiving",
            ));
        }
        *state = FileState::Receiving;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    let result = match declared {
        Some(Ok(n)) if n != slot.size => Err(FileFail::new(
            StatusCode::BAD_REQUEST,
            format!("upload of {n} bytes for a file announced as {}", slot.size),
        )),
        Some(Err(_)) => Err(FileFail::new(StatusCode::BAD_REQUEST, "bad Content-Length")),
        _ => receive_file(st, &s, slot, req.into_body()).await,
    };
    let retry = matches!(&result, Err(FileFail(_, _, true)));
    *lock(&slot.state) = if retry {
        FileState::Waiting
    } else {
        FileState::Ended
    };
    match result {
        Ok(path) => {
            st.emit(ServerEvent::FileDone {
                session: s.id.clone(),
                entry: slot.entry,
                path: path.clone(),
                size: slot.size,
            })
            .await;
            lock(&s.placed).push(path);
            file_ended(st, &s).await;
            Ok(empty(StatusCode::OK))
        }
        Err(FileFail(status, reason, true)) => {
            // The session goes on: the sender may upload it again, cancel, or go idle.
            tracing::info!(session = %s.id, entry = slot.entry, %reason, "localsend: upload broke off");
            Err(Refusal(status, reason))
        }
        Err(FileFail(status, reason, false)) => {
            if !s.finished.load(Ordering::SeqCst) {
                s.failed.fetch_add(1, Ordering::SeqCst);
                st.emit(ServerEvent::FileFailed {
                    session: s.id.clone(),
                    entry: slot.entry,
                    reason: reason.clone(),
                })
                .await;
                file_ended(st, &s).await;
            }
            Err(Refusal(status, reason))
        }
    }
}

async fn file_ended(st: &Arc<State>, s: &Arc<Session>) {
    let ended = s.ended.fetch_add(1, Ordering::SeqCst) + 1;
    if ended < s.total || s.finished.load(Ordering::SeqCst) {
        return;
    }
    let failed = s.failed.load(Ordering::SeqCst);
    let (dest, placed) = (s.dest.clone(), lock(&s.placed).clone());
    let synced =
        tokio::task::spawn_blocking(move || ferry_block::place::sync_batch(&dest, &placed))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
    let end = match (synced, failed) {
        (Err(e), _) => SessionEnd::Failed(format!("could not make the files durable: {e}")),
        (Ok(()), 0) => SessionEnd::Done,
        (Ok(()), n) => SessionEnd::Failed(format!("{n} of {} files failed", s.total)),
    };
    st.end_session(s, end);
}

/// Why a file failed. `retry`: the upload broke off (the connection went), which says nothing
/// about the file, so it may be uploaded again; every other failure is final.
struct FileFail(StatusCode, String, bool);

impl FileFail {
    fn new(status: StatusCode, why: impl Into<String>) -> FileFail {
        FileFail(status, why.into(), false)
    }
}

/// Removes the temp file unless it was placed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn receive_file(
    st: &Arc<State>,
    s: &Arc<Session>,
    slot: &FileSlot,
    mut body: Incoming,
) -> Result<PathBuf, FileFail> {
    let io = |e: std::io::Error| FileFail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let rel = s
        .layout
        .paths
        .get(slot.entry as usize)
        .ok_or_else(|| FileFail::new(StatusCode::INTERNAL_SERVER_ERROR, "no layout"))?;
    let wanted = s.dest.join(rel);
    let temp = s
        .dest
        .join(format!(".ferry-ls-{}-{}.part", s.id, slot.entry));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io)?;
    let mut guard = TempGuard(Some(temp.clone()));
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut hasher = slot
        .sha256
        .map(|_| ring::digest::Context::new(&ring::digest::SHA256));
    let mut cancel = s.cancel.subscribe();
    let stall = st.stall();
    let mut got: u64 = 0;
    loop {
        let frame = tokio::select! {
            _ = cancel.changed() => {
                return Err(FileFail::new(StatusCode::CONFLICT, "the session was cancelled"));
            }
            f = tokio::time::timeout(stall, body.frame()) => f,
        };
        let frame = match frame {
            Err(_) => {
                return Err(FileFail::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the upload stalled for {stall:?}"),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(FileFail::new(
                    StatusCode::BAD_REQUEST,
                    format!("upload broke off: {e}"),
                ))
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        got += data.len() as u64;
        if got > slot.size {
            return Err(FileFail::new(
                StatusCode::BAD_REQUEST,
                format!("more data than the {} bytes announced", slot.size),
            ));
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&data);
        }
        out.write_all(&data).await.map_err(io)?;
        s.bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
        *lock(&s.last_activity) = Instant::now();
        progress(st, s);
    }
    if got != slot.size {
        return Err(FileFail::new(
            StatusCode::BAD_REQUEST,
            format!("{got} bytes received of the {} announced", slot.size),
        ));
    }
    if let (Some(h), Some(want)) = (hasher, slot.sha256) {
        if h.finish().as_ref() != want {
            return Err(FileFail::new(StatusCode::BAD_REQUEST, "SHA-256 mismatch"));
        }
    }
    out.flush().await.map_err(io)?;
    drop(out);
    if *cancel.borrow() {
        return Err(FileFail::new(
            StatusCode::CONFLICT,
            "the session was cancelled",
        ));
    }
    let placed = tokio::task::spawn_blocking(move || place_file(&temp, &wanted))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
    guard.0 = None;
    *lock(&s.last_activity) = Instant::now();
    Ok(placed)
}

fn place_file(temp: &Path, wanted: &Path) -> std::io::Result<PathBuf> {
    ferry_block::place::place(temp, wanted, Os::current())
}

fn progress(st: &State, s: &Session) {
    let mut last = lock(&s.last_progress);
    if last.elapsed() < PROGRESS_INTERVAL {
        return;
    }
    *last = Instant::now();
    let _ = st.events.try_send(ServerEvent::Progress {
        session: s.id.clone(),
        bytes_done: s.bytes_done.load(Ordering::Relaxed),
        files_done: s
            .ended
            .load(Ordering::Relaxed)
            .saturating_sub(s.failed.load(Ordering::Relaxed)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(16), random_hex(16));
    }
}
