//! The LocalSend devices seen on the LAN: a bounded list.
//!
//! Anyone on the LAN can send announcements with made-up fingerprints, as fast as they like,
//! so the list holds at most [`MAX_DEVICES`] entries: a new one evicts the least recently seen,
//! and an entry not heard from for [`MAX_AGE`] is dropped. A device is keyed by fingerprint;
//! a new fingerprint at an address and port another entry has replaces it (the device restarted
//! with a new certificate). Nothing here prompts anyone: only a prepare-upload does.

use ferry_util::lock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::wire::{DeviceInfo, DeviceType, Protocol};

pub const MAX_DEVICES: usize = 64;
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub alias: String,
    pub device_model: Option<String>,
    pub device_type: DeviceType,
    /// Upper-case hex. Proven by a TLS handshake when `verified`, a claim otherwise.
    pub fingerprint: String,
    pub verified: bool,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub version: String,
}

impl Device {
    /// A device described by `info`, heard from `ip`.
    pub fn from_info(info: &DeviceInfo, ip: std::net::IpAddr, verified_fp: Option<&str>) -> Device {
        Device {
            alias: info.alias.clone(),
            device_model: info.device_model.clone(),
            device_type: info.device_type_or_default(),
            fingerprint: verified_fp
                .map(str::to_string)
                .unwrap_or_else(|| info.fingerprint.to_ascii_uppercase()),
            verified: verified_fp.is_some(),
            addr: SocketAddr::new(ip, info.port.unwrap_or(crate::PORT)),
            protocol: info.protocol.unwrap_or(Protocol::Https),
            version: info.version.clone(),
        }
    }
}

struct Seen {
    device: Device,
    at: Instant,
}

/// The device list. Changes bump a counter that [`Devices::changed`] watches.
pub struct Devices {
    max: usize,
    own: Mutex<String>,
    seen: Mutex<HashMap<String, Seen>>,
    version: watch::Sender<u64>,
}

impl Devices {
    pub fn new(max: usize) -> Devices {
        Devices {
            max: max.max(1),
            own: Mutex::default(),
            seen: Mutex::default(),
            version: watch::channel(0).0,
        }
    }

    /// Our own fingerprint: announcements carrying it are our own echo.
    pub fn set_own(&self, fingerprint: &str) {
        *lock(&self.own) = fingerprint.to_ascii_uppercase();
    }

    pub fn is_own(&self, fingerprint: &str) -> bool {
        crate::tls::same_fingerprint(&lock(&self.own), fingerprint)
    }

    /// Records a device; returns whether the list changed in a way worth showing.
    pub fn upsert(&self, d: Device) -> bool {
        if d.fingerprint.is_empty() || self.is_own(&d.fingerprint) {
            return false;
        }
        let now = Instant::now();
        let changed = {
            let mut seen = lock(&self.seen);
            seen.retain(|_, s| now.duration_since(s.at) < MAX_AGE);
            // A verified entry is not replaced by an unverified claim from elsewhere.
            if let Some(old) = seen.get(&d.fingerprint) {
                if old.device.verified && !d.verified && old.device.addr != d.addr {
                    return false;
                }
            }
            let superseded: Vec<String> = seen
                .iter()
                .filter(|(fp, s)| **fp != d.fingerprint && s.device.addr == d.addr)
                .map(|(fp, _)| fp.clone())
                .collect();
            for fp in &superseded {
                seen.remove(fp);
            }
            if !seen.contains_key(&d.fingerprint) && seen.len() >= self.max {
                let oldest = seen
                    .iter()
                    .min_by_key(|(_, s)| s.at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    seen.remove(&k);
                }
            }
            let key = d.fingerprint.clone();
            let verified = d.verified || seen.get(&key).is_some_and(|s| s.device.verified);
            let device = Device { verified, ..d };
            let changed =
                seen.get(&key).map(|s| &s.device) != Some(&device) || !superseded.is_empty();
            seen.insert(key, Seen { device, at: now });
            changed
        };
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
        changed
    }

    /// Marks a device as proven by a handshake that showed this fingerprint.
    pub fn verify(&self, fingerprint: &str) {
        if let Some(s) = lock(&self.seen).get_mut(&fingerprint.to_ascii_uppercase()) {
            s.device.verified = true;
        }
    }

    /// Devices seen recently, by alias.
    pub fn list(&self) -> Vec<Device> {
        let now = Instant::now();
        let mut v: Vec<Device> = lock(&self.seen)
            .values()
            .filter(|s| now.duration_since(s.at) < MAX_AGE)
            .map(|s| s.device.clone())
            .collect();
        v.sort_by_key(|a| a.alias.to_lowercase());
        v
    }

    pub fn len(&self) -> usize {
        lock(&self.seen).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds a device by fingerprint (or a unique prefix of it), alias, or address.
    pub fn find(&self, needle: &str) -> Option<Device> {
        let list = self.list();
        let up = needle.to_ascii_uppercase();
        if let Some(d) = list.iter().find(|d| d.fingerprint == up) {
            return Some(d.clone());
        }
        if let Some(d) = list
            .iter()
            .find(|d| d.addr.to_string() == needle || d.addr.ip().to_string() == needle)
        {
            return Some(d.clone());
        }
        let by_alias: Vec<&Device> = list.iter().filter(|d| d.alias == needle).collect();
        if by_alias.len() == 1 {
            return Some(by_alias[0].clone());
        }
        let by_prefix: Vec<&Device> = list
            .iter()
            .filter(|d| up.len() >= 4 && d.fingerprint.starts_with(&up))
            .collect();
        (by_prefix.len() == 1).then(|| by_prefix[0].clone())
    }

    /// A receiver that sees a new value whenever the list changes.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn dev(fp: &str, last: u8, verified: bool) -> Device {
        Device {
            alias: format!("d{fp}"),
            device_model: None,
            device_type: DeviceType::Mobile,
            fingerprint: fp.into(),
            verified,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 53317),
            protocol: Protocol::Https,
            version: "2.1".into(),
        }
    }

    #[test]
    fn bounded_and_evicts_the_oldest() {
        let d = Devices::new(3);
        d.set_own("SELF");
        assert!(!d.upsert(dev("SELF", 9, false)));
        for (i, fp) in ["A", "B", "C", "D"].iter().enumerate() {
            assert!(d.upsert(dev(fp, i as u8 + 1, false)));
            std::thread::sleep(Duration::from_millis(2));
        }
        let fps: Vec<String> = d.list().into_iter().map(|x| x.fingerprint).collect();
        assert_eq!(fps, ["B", "C", "D"]);
        // The same device again changes nothing.
        assert!(!d.upsert(dev("D", 4, false)));
    }

    #[test]
    fn new_fingerprint_at_the_same_address_replaces_and_verified_sticks() {
        let d = Devices::new(8);
        d.upsert(dev("A", 1, true));
        // A claim of A's fingerprint from another address does not move it.
        assert!(!d.upsert(dev("A", 2, false)));
        assert_eq!(d.find("A").unwrap().addr.ip().to_string(), "10.0.0.1");
        d.upsert(dev("B", 1, false));
        assert!(d.find("A").is_none());
        assert_eq!(d.find("10.0.0.1").unwrap().fingerprint, "B");
        assert_eq!(d.find("dB").unwrap().fingerprint, "B");
    }
}
