//! Multicast discovery: announcements on 224.0.0.167:53317, answered with `POST register`
//! (or, when that fails, a multicast message with `"announce": false`), as the spec says.
//!
//! Bounded against a flood of made-up announcements: the device list keeps at most
//! [`crate::devices::MAX_DEVICES`]; at most [`MAX_ANSWERS`] answers are in flight and each
//! address is answered at most once per [`ANSWER_SPACING`]; datagrams over
//! [`wire::MAX_INFO_BODY`] are dropped. Announcements never prompt anyone.
//!
//! Only start it where multicast may go: Ferry's tests run it inside network namespaces.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::client::{Client, Target};
use crate::devices::{Device, Devices};
use crate::wire::{self, DeviceInfo, Protocol};

pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 167);
/// Answers (register requests) in flight at once.
pub const MAX_ANSWERS: usize = 4;
/// One address is answered at most this often.
pub const ANSWER_SPACING: Duration = Duration::from_secs(2);
/// Addresses whose last answer is remembered.
const MAX_ANSWERED: usize = 256;

#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// IPv4 addresses of the interfaces to use (the allow-list); empty: the system's default.
    pub interfaces: Vec<Ipv4Addr>,
    /// Announce again this often (LocalSend apps announce at start and on refresh).
    pub announce_every: Option<Duration>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            group: GROUP,
            port: crate::PORT,
            interfaces: vec![],
            announce_every: Some(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("multicast socket: {0}")]
    Socket(std::io::Error),
}

/// What to do with one datagram (a plain function, so that it is tested without sockets).
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    Ignore,
    /// A device, and whether it asked for an answer.
    Device(Box<DeviceInfo>, bool),
}

pub fn hear(datagram: &[u8], own_fingerprint: &str) -> Heard {
    let Ok(info) = wire::decode_device_info(datagram) else {
        return Heard::Ignore;
    };
    if info.fingerprint.is_empty()
        || crate::tls::same_fingerprint(&info.fingerprint, own_fingerprint)
    {
        return Heard::Ignore;
    }
    let announce = info.announce == Some(true);
    Heard::Device(Box::new(info), announce)
}

/// Whether `addr` may be answered now; remembers that it was.
fn may_answer(answered: &Mutex<HashMap<SocketAddr, Instant>>, addr: SocketAddr) -> bool {
    let mut a = answered.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if a.get(&addr)
        .is_some_and(|t| now.duration_since(*t) < ANSWER_SPACING)
    {
        return false;
    }
    if a.len() >= MAX_ANSWERED {
        a.retain(|_, t| now.duration_since(*t) < ANSWER_SPACING);
        if a.len() >= MAX_ANSWERED {
            return false;
        }
    }
    a.insert(addr, now);
    true
}

pub struct Discovery {
    sock: Arc<UdpSocket>,
    cfg: DiscoveryConfig,
    info: DeviceInfo,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn socket(cfg: &DiscoveryConfig) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as P, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(P::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port).into())?;
    if cfg.interfaces.is_empty() {
        s.join_multicast_v4(&cfg.group, &Ipv4Addr::UNSPECIFIED)?;
    }
    for i in &cfg.interfaces {
        s.join_multicast_v4(&cfg.group, i)?;
    }
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

impl Discovery {
    /// Joins the group, announces `info` (ours: fingerprint, port, protocol filled in) and
    /// records what it hears in `devices`, answering announcements with `client`.
    pub fn start(
        cfg: DiscoveryConfig,
        info: DeviceInfo,
        devices: Arc<Devices>,
        client: Client,
    ) -> Result<Discovery, DiscoveryError> {
        let sock = Arc::new(socket(&cfg).map_err(DiscoveryError::Socket)?);
        devices.set_own(&info.fingerprint);
        let mut d = Discovery {
            sock,
            cfg,
            info,
            tasks: vec![],
        };
        d.tasks.push(tokio::spawn(listen(
            d.sock.clone(),
            d.cfg.clone(),
            d.info.clone(),
            devices,
            client,
        )));
        let (sock, cfg, info) = (d.sock.clone(), d.cfg.clone(), d.info.clone());
        d.tasks.push(tokio::spawn(async move {
            for delay in [0u64, 1000, 2000] {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                send(&sock, &cfg, &info, true).await;
            }
            let Some(every) = cfg.announce_every else {
                return;
            };
            loop {
                tokio::time::sleep(every).await;
                send(&sock, &cfg, &info, true).await;
            }
        }));
        Ok(d)
    }

    /// Announces once more (a "refresh").
    pub async fn announce(&self) {
        send(&self.sock, &self.cfg, &self.info, true).await;
    }
}

async fn send(sock: &UdpSocket, cfg: &DiscoveryConfig, info: &DeviceInfo, announce: bool) {
    let msg = DeviceInfo {
        announce: Some(announce),
        ..info.clone()
    };
    let Ok(bytes) = serde_json::to_vec(&msg) else {
        return;
    };
    let to = SocketAddr::from((cfg.group, cfg.port));
    if cfg.interfaces.is_empty() {
        if let Err(e) = sock.send_to(&bytes, to).await {
            tracing::debug!(error = %e, "localsend: announcement not sent");
        }
        return;
    }
    for i in &cfg.interfaces {
        let r = socket2::SockRef::from(sock).set_multicast_if_v4(i);
        if let Err(e) = r {
            tracing::debug!(error = %e, iface = %i, "localsend: no multicast on this interface");
            continue;
        }
        if let Err(e) = sock.send_to(&bytes, to).await {
            tracing::debug!(error = %e, iface = %i, "localsend: announcement not sent");
        }
    }
}

async fn listen(
    sock: Arc<UdpSocket>,
    cfg: DiscoveryConfig,
    info: DeviceInfo,
    devices: Arc<Devices>,
    client: Client,
) {
    let answers = Arc::new(Semaphore::new(MAX_ANSWERS));
    let answered = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; wire::MAX_INFO_BODY];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "localsend: multicast receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allowed(&cfg, from.ip()) {
            continue;
        }
        let Heard::Device(theirs, announce) = hear(&buf[..n], &info.fingerprint) else {
            continue;
        };
        let device = Device::from_info(&theirs, from.ip(), None);
        let target = Target::from(&device);
        devices.upsert(device);
        if !announce || !may_answer(&answered, target.addr) {
            continue;
        }
        let Ok(permit) = answers.clone().try_acquire_owned() else {
            continue;
        };
        let (client, devices, sock, cfg, info) = (
            client.clone(),
            devices.clone(),
            sock.clone(),
            cfg.clone(),
            info.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match client.register(&target).await {
                Ok((answer, fp)) => {
                    let mut d = Device::from_info(&answer, target.addr.ip(), fp.as_deref());
                    d.addr = target.addr;
                    d.protocol = target.protocol;
                    devices.upsert(d);
                }
                Err(e) => {
                    tracing::debug!(to = %target.addr, error = %e, "localsend: register answer failed; answering by multicast");
                    send(&sock, &cfg, &info, false).await;
                }
            }
        });
    }
}

/// Whether a datagram from `ip` comes through an allowed interface: with an allow-list, its
/// source must be on the same /24 as one of the listed addresses (a cheap stand-in for asking
/// which interface it arrived on).
fn allowed(cfg: &DiscoveryConfig, ip: IpAddr) -> bool {
    if cfg.interfaces.is_empty() {
        return true;
    }
    let IpAddr::V4(v4) = ip else { return false };
    cfg.interfaces
        .iter()
        .any(|i| i.octets()[..3] == v4.octets()[..3])
}

/// Our announcement as a device would send it (for tests and benchmarks).
pub fn announcement(info: &DeviceInfo) -> Vec<u8> {
    serde_json::to_vec(&DeviceInfo {
        announce: Some(true),
        protocol: info.protocol.or(Some(Protocol::Https)),
        ..info.clone()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hears_devices_not_itself_nor_garbage() {
        let msg = br#"{"alias":"Phone","version":"2.1","fingerprint":"AB","port":53317,"protocol":"https","announce":true}"#;
        match hear(msg, "CD") {
            Heard::Device(i, true) => assert_eq!(i.alias, "Phone"),
            other => panic!("{other:?}"),
        }
        assert_eq!(hear(msg, "ab"), Heard::Ignore);
        assert_eq!(hear(b"\xff\xfe", "CD"), Heard::Ignore);
        assert_eq!(hear(br#"{"alias":"x"}"#, "CD"), Heard::Ignore);
        let reply = br#"{"alias":"P","fingerprint":"AB","announce":false}"#;
        assert!(matches!(hear(reply, "CD"), Heard::Device(_, false)));
    }

    #[test]
    fn answers_are_spaced_and_bounded() {
        let a = Mutex::new(HashMap::new());
        let x: SocketAddr = "10.0.0.1:53317".parse().unwrap();
        assert!(may_answer(&a, x));
        assert!(!may_answer(&a, x));
        for i in 0..MAX_ANSWERED * 2 {
            let y = SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8], 53317));
            may_answer(&a, y);
        }
        assert!(a.lock().unwrap().len() <= MAX_ANSWERED);
    }

    #[test]
    fn allow_list() {
        let cfg = DiscoveryConfig {
            interfaces: vec![Ipv4Addr::new(10, 99, 0, 1)],
            ..Default::default()
        };
        assert!(allowed(&cfg, "10.99.0.7".parse().unwrap()));
        assert!(!allowed(&cfg, "192.168.1.7".parse().unwrap()));
        assert!(allowed(
            &DiscoveryConfig::default(),
            "192.168.1.7".parse().unwrap()
        ));
    }
}
