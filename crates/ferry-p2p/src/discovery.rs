//! LAN discovery over mDNS / DNS-SD (`_ferry._udp.local.`).
//!
//! Each node announces one instance named by its full fingerprint, with TXT records holding
//! only display data: `n` (name), `os`, `v` (version). Never anything about libraries. What mDNS
//! says is a *hint*: a discovered peer counts as connected only after a QUIC handshake proves
//! the key its instance name claims.
//!
//! The daemon joins multicast groups on every interface before an allow-list applies (measured),
//! so tests run discovery only inside network namespaces of their own.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use crate::hello::NodeInfo;
use crate::identity::PeerId;

pub const SERVICE_TYPE: &str = "_ferry._udp.local.";

#[derive(Debug, Clone, Default)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    /// Interface names to use; empty means all.
    pub interfaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryEvent {
    Resolved {
        id: PeerId,
        info: NodeInfo,
        addrs: Vec<SocketAddr>,
    },
    Removed {
        id: PeerId,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("mDNS discovery: {0}")]
pub struct DiscoveryError(String);

fn err<E: std::fmt::Display>(e: E) -> DiscoveryError {
    DiscoveryError(e.to_string())
}

pub struct Discovery {
    daemon: ServiceDaemon,
    id: PeerId,
    port: u16,
    fullname: String,
}

impl Discovery {
    /// Starts announcing ourselves and browsing for others; events arrive on the returned channel.
    pub fn start(
        cfg: &DiscoveryConfig,
        id: PeerId,
        port: u16,
        info: &NodeInfo,
    ) -> Result<(Discovery, mpsc::Receiver<DiscoveryEvent>), DiscoveryError> {
        let me = Discovery {
            fullname: format!("{}.{SERVICE_TYPE}", id.fingerprint()),
            daemon: ServiceDaemon::new().map_err(err)?,
            id,
            port,
        };
        // On any error below, dropping `me` stops the daemon thread.
        if !cfg.interfaces.is_empty() {
            me.daemon.disable_interface(IfKind::All).map_err(err)?;
            for name in &cfg.interfaces {
                me.daemon
                    .enable_interface(IfKind::Name(name.clone()))
                    .map_err(err)?;
            }
        }
        me.announce(info)?;
        let browse = me.daemon.browse(SERVICE_TYPE).map_err(err)?;
        let (tx, rx) = mpsc::channel(256);
        let own = id;
        tokio::spawn(async move {
            while let Ok(ev) = browse.recv_async().await {
                let out = match ev {
                    ServiceEvent::ServiceResolved(s) => resolved(&s),
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        instance_id(&fullname).map(|id| DiscoveryEvent::Removed { id })
                    }
                    _ => None,
                };
                let Some(ev) = out else { continue };
                let (DiscoveryEvent::Resolved { id, .. } | DiscoveryEvent::Removed { id }) = &ev;
                if *id != own && tx.send(ev).await.is_err() {
                    break;
                }
            }
        });
        Ok((me, rx))
    }

    /// (Re)announces our service; called again when the display name changes.
    pub fn announce(&self, info: &NodeInfo) -> Result<(), DiscoveryError> {
        let host = format!("ferry-{}.local.", self.id.short());
        let props = [
            ("n", info.name.as_str()),
            ("os", info.os.as_str()),
            ("v", info.version.as_str()),
        ];
        let service = ServiceInfo::new(
            SERVICE_TYPE,
            &self.id.fingerprint(),
            &host,
            (),
            self.port,
            &props[..],
        )
        .map_err(err)?
        .enable_addr_auto();
        self.daemon.register(service).map_err(err)
    }

    /// Says goodbye (peers see us leave in about a second) and stops the daemon.
    pub async fn shutdown(self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv_async()).await;
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv_async()).await;
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        // The daemon runs on a thread of its own that only a shutdown ends (a second one after
        // `shutdown()` is refused harmlessly).
        let _ = self.daemon.shutdown();
    }
}

fn instance_id(fullname: &str) -> Option<PeerId> {
    fullname
        .strip_suffix(SERVICE_TYPE)?
        .strip_suffix('.')?
        .parse()
        .ok()
}

fn resolved(s: &mdns_sd::ResolvedService) -> Option<DiscoveryEvent> {
    let id = instance_id(s.get_fullname())?;
    let info = NodeInfo {
        name: s.get_property_val_str("n").unwrap_or_default().to_string(),
        os: s.get_property_val_str("os").unwrap_or_default().to_string(),
        version: s.get_property_val_str("v").unwrap_or_default().to_string(),
    }
    .sanitized();
    let port = s.get_port();
    let mut ips: Vec<IpAddr> = s
        .get_addresses()
        .iter()
        .map(|a| a.to_ip_addr())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // IPv4 first: it needs no scope id, and it is what most LANs route.
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    let addrs = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    Some(DiscoveryEvent::Resolved { id, info, addrs })
}
