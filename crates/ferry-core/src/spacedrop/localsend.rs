//! LocalSend devices as Spacedrop peers: the adapter between `ferry-localsend` (the protocol)
//! and Spacedrop's prompts, live transfers and store, so a LocalSend transfer is prompted,
//! listed, cancelled and recorded like a Ferry one (`via` says which it was).
//!
//! What differs from a Ferry peer, and why:
//! - **Identity.** A LocalSend device is known by the SHA-256 of its TLS certificate, proven
//!   when it showed that certificate on the connection, only claimed otherwise. It is never a
//!   paired or Ferry-verified identity: `--accept-from` lists never match it (only `--yes`
//!   accepts one unasked), and its `peer` is that hash, not an Ed25519 key.
//! - **No pause and no resume.** LocalSend has neither: Pause is refused, and a LocalSend
//!   transfer cut by a restart stays failed.
//! - Placement, naming and durability are Spacedrop's own (`ferry_block::place`), applied by
//!   the LocalSend server as files arrive; see `crates/ferry-localsend/PROTOCOL.md`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ferry_block::manifest::{EntryKind, Manifest};
use ferry_localsend::server::{Answer, IncomingOffer, ServerEvent, SessionEnd};
use ferry_localsend::{
    Client, ClientError, Device, DeviceType, Devices, Discovery, DiscoveryConfig, Identity,
    LocalFile, SendOptions, SendProgress, Server, ServerConfig, Target,
};
use ferry_p2p::PeerId;
use ferry_util::{lock, unix_now};
use tokio::sync::{mpsc, watch};

use super::commands::Cmd;
use super::decide;
use super::state::{Asked, SpacedropState};
use super::store::{FileStatus, SavedLayout, TransferRow};
use super::types::{
    Decision, Direction, FailedFile, LocalSendDevice, Prompt, Side, TransferInfo, TransferState,
    Via,
};
use super::wire::TransferId;
use crate::event::Event;

/// LocalSend on a node (off unless configured: it listens on a fixed port).
#[derive(Debug, Clone)]
pub struct LocalSendConfig {
    /// The HTTPS server's address (LocalSend's port is 53317).
    pub listen: SocketAddr,
    /// A PIN LocalSend senders must give.
    pub pin: Option<String>,
    /// Multicast announcements on 224.0.0.167:53317 (follows the node's discovery switch).
    pub discovery: bool,
    /// IPv4 addresses of the interfaces multicast uses; empty: the system's default.
    pub interfaces: Vec<Ipv4Addr>,
}

impl Default for LocalSendConfig {
    fn default() -> Self {
        LocalSendConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], ferry_localsend::PORT)),
            pin: None,
            discovery: true,
            interfaces: vec![],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalSendError {
    #[error("LocalSend certificate: {0}")]
    Tls(#[from] ferry_localsend::tls::TlsError),
    #[error("LocalSend server: {0}")]
    Server(#[from] ferry_localsend::server::ServerError),
    #[error("LocalSend discovery: {0}")]
    Discovery(#[from] ferry_localsend::discovery::DiscoveryError),
    #[error("no LocalSend device {0:?} (ferry peers lists them)")]
    NoDevice(String),
    #[error("LocalSend is off on this node")]
    Off,
}

/// The running LocalSend side of a node.
pub(crate) struct LocalSend {
    /// The one strong handle: the server stops when this is dropped.
    _server: Arc<Server>,
    client: Client,
    devices: Arc<Devices>,
    _discovery: Option<Discovery>,
}

/// The LocalSend device behind a prompt or transfer, as Spacedrop records it.
#[derive(Clone)]
struct Sender {
    peer: PeerId,
    name: String,
    addr: String,
    via: Via,
}

/// Sessions accepted here and not started yet, by session id: under which transfer id, from
/// whom, and what was offered.
type Accepted = Arc<Mutex<HashMap<String, (TransferId, Sender, Manifest)>>>;

/// The peer id a LocalSend device is listed under: its certificate's SHA-256 (upper-case hex),
/// or, for a fingerprint that is no such hash (a claim), the SHA-256 of what it claims.
pub fn peer_of(fingerprint: &str) -> PeerId {
    let mut id = [0u8; 32];
    let hex = fingerprint.as_bytes();
    let parsed = hex.len() == 64
        && id.iter_mut().enumerate().all(|(i, b)| {
            std::str::from_utf8(&hex[2 * i..2 * i + 2])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|v| *b = v)
                .is_some()
        });
    if !parsed {
        let d = ring::digest::digest(&ring::digest::SHA256, fingerprint.as_bytes());
        id.copy_from_slice(d.as_ref());
    }
    PeerId(id)
}

/// How a LocalSend device is shown in a fingerprint's place: the first 12 hex digits.
pub fn short_of(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase()
}

impl LocalSend {
    /// Starts the server (and multicast discovery if asked), with a certificate kept in
    /// `data_dir/localsend/`.
    pub(crate) async fn start(
        shared: Arc<SpacedropState>,
        data_dir: &Path,
        alias: &str,
        cfg: LocalSendConfig,
    ) -> Result<LocalSend, LocalSendError> {
        let identity = Identity::load_or_generate(&data_dir.join("localsend"))?;
        let devices = Arc::new(Devices::new(64));
        let mut scfg = ServerConfig::new(ferry_localsend::device_info(alias, DeviceType::Desktop));
        scfg.pin = cfg.pin.clone();
        // Ours decides; the server's own limit only backs it up.
        scfg.prompt_timeout = lock(&shared.cfg).prompt_timeout + Duration::from_secs(5);
        let (server, events) = Server::bind(cfg.listen, &identity, scfg, devices.clone()).await?;
        let server = Arc::new(server);
        let client = Client::new(&identity, server.info())?;
        let discovery = if cfg.discovery {
            let d = DiscoveryConfig {
                interfaces: cfg.interfaces.clone(),
                ..Default::default()
            };
            Some(Discovery::start(
                d,
                server.info(),
                devices.clone(),
                client.clone(),
            )?)
        } else {
            None
        };
        tokio::spawn(announce_devices(shared.clone(), Arc::downgrade(&devices)));
        // The tasks hold the server weakly: dropping this (the node stops) stops it.
        tokio::spawn(serve(shared, Arc::downgrade(&server), events));
        tracing::info!(addr = %server.local_addr(), "LocalSend: listening");
        Ok(LocalSend {
            _server: server,
            client,
            devices,
            _discovery: discovery,
        })
    }

    pub(crate) fn devices(&self) -> Vec<LocalSendDevice> {
        self.devices.list().iter().map(device_info).collect()
    }

    /// A device by alias, fingerprint (a prefix will do) or address.
    pub(crate) fn find(&self, needle: &str) -> Result<Device, LocalSendError> {
        self.devices
            .find(needle)
            .ok_or_else(|| LocalSendError::NoDevice(needle.into()))
    }

    /// Sends `paths` to `device`; returns at once, progress arrives as transfer events.
    /// `pin`: the receiver's, when it asks for one (it is sent, never stored).
    pub(crate) async fn send(
        &self,
        shared: Arc<SpacedropState>,
        device: &Device,
        collected: ferry_block::manifest::Collected,
        pin: Option<String>,
    ) -> Result<TransferId, super::SpacedropError> {
        let files = local_files(&collected.manifest, &collected.sources);
        let target = Target::from(device);
        let row = TransferRow::outgoing(
            peer_of(&device.fingerprint),
            device.alias.clone(),
            Some(device.addr.to_string()),
            collected,
            Via::LocalSend {
                fingerprint: device.fingerprint.clone(),
                verified: device.verified,
                address: device.addr.to_string(),
            },
        );
        shared.store.put(&row)?;
        let id = row.id;
        let opts = SendOptions {
            pin,
            ..Default::default()
        };
        tokio::spawn(drive_send(
            shared,
            self.client.clone(),
            target,
            row,
            files,
            opts,
        ));
        Ok(id)
    }
}

/// What front ends see of a device.
pub(super) fn device_info(d: &Device) -> LocalSendDevice {
    LocalSendDevice {
        alias: d.alias.clone(),
        fingerprint: d.fingerprint.clone(),
        short: short_of(&d.fingerprint),
        verified: d.verified,
        address: d.addr.to_string(),
        device_type: d.device_type.as_str().to_string(),
        device_model: d.device_model.clone(),
    }
}

/// Tells front ends the device list whenever it changes: at once when a device is heard,
/// within [`EXPIRY_CHECK`] when one goes quiet (the list forgets it silently).
/// Ends when LocalSend stops (the list is gone).
async fn announce_devices(shared: Arc<SpacedropState>, devices: Weak<Devices>) {
    let Some(mut changed) = devices.upgrade().map(|d| d.changed()) else {
        return;
    };
    let mut last: Vec<LocalSendDevice> = vec![];
    loop {
        let Some(list) = devices.upgrade().map(|d| d.list()) else {
            return;
        };
        let now: Vec<LocalSendDevice> = list.iter().map(device_info).collect();
        if now != last {
            shared.emit(Event::LocalSendDevices {
                devices: now.clone(),
            });
            last = now;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(EXPIRY_CHECK) => {}
        }
    }
}

const EXPIRY_CHECK: Duration = Duration::from_secs(10);

/// The files of a manifest as LocalSend sends them: each with its `/`-joined path (LocalSend
/// has no empty folders) and its entry id as the file id.
fn local_files(m: &Manifest, sources: &[PathBuf]) -> Vec<(u32, LocalFile)> {
    m.entries
        .iter()
        .zip(sources)
        .enumerate()
        .filter(|(_, (e, _))| e.kind == EntryKind::File)
        .map(|(i, (e, path))| {
            (
                i as u32,
                LocalFile {
                    name: e.path.join("/"),
                    path: path.clone(),
                    size: e.size,
                },
            )
        })
        .collect()
}

/// How a transfer was stopped from this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The user cancelled it.
    Cancel,
    /// The node stopped: LocalSend cannot resume, so it failed.
    Interrupt,
}

const INTERRUPTED: &str = "interrupted: this node stopped, and LocalSend transfers cannot resume";

/// How a LocalSend send ended, as a transfer state (a plain function: unit-tested).
fn send_end(r: &Result<(), ClientError>, stopped: Option<Stop>) -> TransferState {
    match (r, stopped) {
        (Ok(()), _) => TransferState::Done,
        (Err(_), Some(Stop::Cancel)) => TransferState::Cancelled { by: Side::Local },
        (Err(_), Some(Stop::Interrupt)) => TransferState::Failed {
            reason: INTERRUPTED.into(),
        },
        (Err(e), None) => by_error(e),
    }
}

fn by_error(e: &ClientError) -> TransferState {
    match e {
        ClientError::Cancelled => TransferState::Cancelled { by: Side::Local },
        ClientError::PeerCancelled(_) => TransferState::Cancelled { by: Side::Peer },
        ClientError::Rejected | ClientError::Busy | ClientError::PinRequired => {
            TransferState::Rejected {
                reason: e.to_string(),
            }
        }
        e => TransferState::Failed {
            reason: e.to_string(),
        },
    }
}

async fn drive_send(
    shared: Arc<SpacedropState>,
    client: Client,
    target: Target,
    row: TransferRow,
    files: Vec<(u32, LocalFile)>,
    opts: SendOptions,
) {
    let id = row.id;
    let mut cmds = shared.register(TransferInfo::starting(&row, TransferState::Waiting));
    let progress = Arc::new(SendProgress::default());
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let send = client.send(
        &target,
        files.into_iter().map(|(_, f)| f).collect(),
        opts,
        progress.clone(),
        cancel_rx,
    );
    tokio::pin!(send);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut stopped = None;
    let result = loop {
        tokio::select! {
            r = &mut send => break r.map(|_| ()),
            cmd = cmds.next() => match cmd {
                Some(Cmd::Interrupt) => {
                    stopped = Some(Stop::Interrupt);
                    cancel_tx.send_replace(true);
                }
                Some(Cmd::Cancel) | None => {
                    stopped = Some(Stop::Cancel);
                    cancel_tx.send_replace(true);
                }
                Some(Cmd::Pause) | Some(Cmd::Resume) => {
                    tracing::info!(transfer = %id.hex(), "LocalSend cannot pause");
                }
            },
            _ = tick.tick() => {
                let (bytes, files, accepted) = (
                    progress.bytes_done.load(Ordering::Relaxed),
                    progress.files_done.load(Ordering::Relaxed),
                    progress.accepted.load(Ordering::Relaxed),
                );
                shared.update(&id, |i| {
                    if accepted > 0 {
                        i.state = TransferState::Transferring;
                    }
                    i.bytes_done = bytes;
                    i.files_done = files;
                });
            }
        }
    };
    if let Err(e) = &result {
        tracing::info!(transfer = %id.hex(), error = %e, "LocalSend send ended");
    }
    shared.finish(&id, send_end(&result, stopped));
}

/// What the server reports, turned into prompts and transfers.
async fn serve(
    shared: Arc<SpacedropState>,
    server: Weak<Server>,
    mut events: mpsc::Receiver<ServerEvent>,
) {
    // Sessions this node stopped because it was stopping (they end failed, not cancelled).
    let interrupted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let accepted: Accepted = Arc::default();
    // Sessions running, by session id: the transfer, and its manifest for the files' names
    // (kept here: a store read per file would decode the whole manifest each time).
    let mut live: HashMap<String, (TransferId, Manifest)> = HashMap::new();
    while let Some(e) = events.recv().await {
        match e {
            ServerEvent::Offer(o) => {
                // The server holds one session at a time: a new offer means that any session
                // accepted before it has started (and left `accepted`) or never will (the
                // server failed to prepare it after the answer). Kept, each such one held its
                // manifest for as long as the node ran.
                lock(&accepted).clear();
                tokio::spawn(ask(shared.clone(), accepted.clone(), o));
            }
            ServerEvent::Started {
                session,
                dest,
                layout,
            } => {
                let Some((id, who, manifest)) = lock(&accepted).remove(&session) else {
                    continue;
                };
                let row = TransferRow {
                    id,
                    direction: Direction::Receive,
                    peer: who.peer,
                    peer_name: who.name,
                    peer_addr: Some(who.addr),
                    state: "transferring".into(),
                    reason: None,
                    dest: Some(dest),
                    manifest,
                    sources: vec![],
                    layout: SavedLayout {
                        paths: layout.paths.clone(),
                        renamed: layout.renamed.clone(),
                    },
                    created: unix_now(),
                    via: who.via,
                };
                if let Err(e) = shared.store.put(&row) {
                    tracing::error!(error = %e, "could not record a LocalSend transfer");
                }
                let cmds =
                    shared.register(TransferInfo::starting(&row, TransferState::Transferring));
                let (server, stops) = (server.clone(), interrupted.clone());
                tokio::spawn(follow_commands(server, stops, session.clone(), id, cmds));
                live.insert(session, (id, row.manifest));
            }
            ServerEvent::Progress {
                session,
                bytes_done,
                files_done,
            } => {
                if let Some((id, _)) = live.get(&session) {
                    shared.update(id, |i| {
                        i.bytes_done = bytes_done;
                        i.files_done = files_done;
                    });
                }
            }
            ServerEvent::FileDone {
                session,
                entry,
                path,
                size,
            } => {
                if let Some((id, m)) = live.get(&session) {
                    record(&shared, id, m, entry, size, &FileStatus::Done(path));
                }
            }
            ServerEvent::FileFailed {
                session,
                entry,
                reason,
            } => {
                if let Some((id, m)) = live.get(&session) {
                    record(
                        &shared,
                        id,
                        m,
                        entry,
                        0,
                        &FileStatus::Failed(reason.clone()),
                    );
                    let path = m.display_path(entry);
                    shared.update(id, |i| i.add_failed(FailedFile { path, reason }));
                }
            }
            ServerEvent::Ended { session, end } => {
                if let Some((id, _)) = live.remove(&session) {
                    let stopping = lock(&interrupted).remove(&session);
                    shared.finish(&id, received_end(end, stopping));
                }
            }
            ServerEvent::Refused {
                from,
                route,
                status,
                reason,
            } => {
                tracing::info!(%from, route, status, %reason, "LocalSend: refused a request");
            }
        }
    }
}

fn record(
    shared: &SpacedropState,
    id: &TransferId,
    m: &Manifest,
    entry: u32,
    size: u64,
    s: &FileStatus,
) {
    if let Err(e) = shared
        .store
        .set_file(id, entry, size, &m.display_path(entry), s)
    {
        tracing::error!(error = %e, "could not record a LocalSend file");
    }
}

/// How a LocalSend reception ended, as a transfer state; `interrupted`: this node ended it
/// because it was stopping.
fn received_end(end: SessionEnd, interrupted: bool) -> TransferState {
    match end {
        SessionEnd::Done => TransferState::Done,
        _ if interrupted => TransferState::Failed {
            reason: INTERRUPTED.into(),
        },
        SessionEnd::Failed(reason) => TransferState::Failed { reason },
        SessionEnd::Cancelled { by_peer: true } => TransferState::Cancelled { by: Side::Peer },
        SessionEnd::Cancelled { by_peer: false } => TransferState::Cancelled { by: Side::Local },
    }
}

/// A reception's commands: a cancel ends the session; LocalSend cannot pause.
async fn follow_commands(
    server: Weak<Server>,
    interrupted: Arc<Mutex<HashSet<String>>>,
    session: String,
    id: TransferId,
    mut cmds: super::commands::Commands,
) {
    loop {
        let cmd = cmds.next().await;
        match cmd {
            Some(Cmd::Cancel) | Some(Cmd::Interrupt) => {
                if matches!(cmd, Some(Cmd::Interrupt)) {
                    lock(&interrupted).insert(session.clone());
                }
                if let Some(server) = server.upgrade() {
                    server.cancel(&session);
                }
                return;
            }
            Some(Cmd::Pause) | Some(Cmd::Resume) => {
                tracing::info!(transfer = %id.hex(), "LocalSend cannot pause");
            }
            // The transfer ended: nothing more to command.
            None => return,
        }
    }
}

/// Asks about a LocalSend offer like a Ferry one, and answers the server.
async fn ask(shared: Arc<SpacedropState>, accepted: Accepted, o: IncomingOffer) {
    let fingerprint = o
        .cert_fingerprint
        .clone()
        .unwrap_or_else(|| o.info.fingerprint.to_ascii_uppercase());
    let who = Sender {
        peer: peer_of(&fingerprint),
        name: o.info.alias.clone(),
        addr: o.from.to_string(),
        via: Via::LocalSend {
            verified: o.cert_fingerprint.is_some(),
            fingerprint: fingerprint.clone(),
            address: o.from.ip().to_string(),
        },
    };
    let (policy, timeout, default_dest) = {
        let c = lock(&shared.cfg);
        (c.accept.clone(), c.prompt_timeout, c.dest.clone())
    };
    let id = TransferId::random();
    let manifest = &o.offer.manifest;
    let decision = if decide::accepts_localsend_unasked(&policy) {
        Decision::Accept { dest: None }
    } else {
        let prompt = Prompt {
            transfer: id.hex(),
            peer: who.peer,
            peer_short: short_of(&fingerprint),
            peer_name: who.name.clone(),
            via: who.via.clone(),
            files: manifest.file_count(),
            bytes: manifest.total_bytes(),
            first_names: manifest.first_names(5),
            first_files: manifest.first_nested_files(5),
            folders: manifest.folder_count(),
            expires_in_ms: timeout.as_millis() as u64,
        };
        // A LocalSend sender that gives up is refused by the server at its own timeout.
        match shared.ask(prompt, timeout, std::future::pending()).await {
            Asked::Answered(d) => d,
            Asked::Busy | Asked::TimedOut | Asked::Withdrawn => Decision::Reject,
        }
    };
    let answer = match decision {
        Decision::Accept { dest } => {
            let dest = dest.unwrap_or(default_dest);
            if let Err(e) = std::fs::create_dir_all(&dest) {
                tracing::warn!(dest = %dest.display(), error = %e, "LocalSend: no destination");
                Answer::Reject
            } else {
                lock(&accepted).insert(o.session.clone(), (id, who, o.offer.manifest.clone()));
                Answer::Accept { dest }
            }
        }
        Decision::Reject => Answer::Reject,
    };
    // The server gave up waiting (its timeout, or the sender's request dropped): the session
    // will never start, and its entry (manifest and all) must not stay.
    if o.reply.send(answer).is_err() {
        lock(&accepted).remove(&o.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_hash_is_the_peer_id_and_a_claim_is_hashed() {
        let fp = "AB".repeat(32);
        assert_eq!(peer_of(&fp).0, [0xab; 32]);
        // Not 64 hex digits: a claim, hashed, never taken as it is.
        let claimed = peer_of("not-a-fingerprint");
        assert_ne!(claimed.0, [0; 32]);
        assert_eq!(claimed, peer_of("not-a-fingerprint"));
        // 64 characters that are not all hex: hashed too.
        assert_eq!(peer_of(&"G0".repeat(32)).0, {
            let d = ring::digest::digest(&ring::digest::SHA256, "G0".repeat(32).as_bytes());
            <[u8; 32]>::try_from(d.as_ref()).unwrap()
        });
        assert_eq!(short_of(&fp), "abababababab");
    }

    #[test]
    fn how_a_send_ends() {
        assert_eq!(send_end(&Ok(()), None), TransferState::Done);
        assert_eq!(
            send_end(&Err(ClientError::Rejected), None),
            TransferState::Rejected {
                reason: "the receiver declined".into()
            }
        );
        assert_eq!(
            send_end(&Err(ClientError::PeerCancelled(403)), None),
            TransferState::Cancelled { by: Side::Peer }
        );
        // Whatever the error, a cancel here was a cancel, and a stop of this node a failure
        // (LocalSend cannot resume).
        assert_eq!(
            send_end(&Err(ClientError::Timeout("x")), Some(Stop::Cancel)),
            TransferState::Cancelled { by: Side::Local }
        );
        assert_eq!(
            send_end(&Err(ClientError::Cancelled), Some(Stop::Interrupt)),
            TransferState::Failed {
                reason: INTERRUPTED.into()
            }
        );
        assert!(matches!(
            send_end(&Err(ClientError::Timeout("x")), None),
            TransferState::Failed { .. }
        ));
    }

    #[test]
    fn how_a_reception_ends() {
        assert_eq!(received_end(SessionEnd::Done, false), TransferState::Done);
        assert_eq!(received_end(SessionEnd::Done, true), TransferState::Done);
        assert_eq!(
            received_end(SessionEnd::Cancelled { by_peer: true }, false),
            TransferState::Cancelled { by: Side::Peer }
        );
        assert_eq!(
            received_end(SessionEnd::Cancelled { by_peer: false }, true),
            TransferState::Failed {
                reason: INTERRUPTED.into()
            }
        );
    }
}
