//! LocalSend v2.1 interoperability: Ferry as a LocalSend peer (see `PROTOCOL.md` beside this
//! crate for what is implemented, what is not, and how trust differs from a Ferry peer's).
//!
//! - [`wire`]: the JSON messages, decoded with bounds and typed errors.
//! - [`offer`]: a prepare-upload as a Spacedrop manifest (same name rules, same layout).
//! - [`tls`]: the self-signed certificate and its fingerprint; TLS configs for both sides.
//! - [`server`]: the HTTPS receiver (info, register, prepare-upload, upload, cancel).
//! - [`client`]: the sender (register, prepare-upload, upload, cancel).
//! - [`discovery`]: multicast announcements and answers; [`devices`]: the bounded device list.

// Nothing a LocalSend peer sends may panic the node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod client;
pub mod devices;
pub mod discovery;
pub mod offer;
pub mod server;
pub mod tls;
pub mod wire;

/// The default TCP and UDP port.
pub const PORT: u16 = 53317;

pub use client::{Client, ClientError, LocalFile, SendOptions, SendOutcome, SendProgress, Target};
pub use devices::{Device, Devices};
pub use discovery::{Discovery, DiscoveryConfig};
pub use server::{Answer, IncomingOffer, Server, ServerConfig, ServerEvent, SessionEnd};
pub use tls::Identity;
pub use wire::{DeviceInfo, DeviceType, Protocol};

/// Our description with defaults filled in.
pub fn device_info(alias: &str, device_type: DeviceType) -> DeviceInfo {
    DeviceInfo {
        alias: alias.to_string(),
        version: wire::PROTOCOL_VERSION.to_string(),
        device_model: Some("Ferry".into()),
        device_type: Some(device_type),
        fingerprint: String::new(),
        port: Some(PORT),
        protocol: Some(Protocol::Https),
        download: false,
        announce: None,
    }
}
