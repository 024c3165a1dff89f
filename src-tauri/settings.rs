//! The app's settings (`settings.json` in the data dir), and environment overrides for tests
//! and scripted runs (the same variables as the `ferry` CLI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_core::{NodeConfig, Target};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    System,
    Light,
    Dark,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
pub struct Settings {
    /// Display name; empty means the host name.
    pub name: String,
    /// Where accepted files go.
    pub download_dir: String,
    pub discovery: bool,
    /// mDNS interface allow-list; empty means all.
    pub interfaces: Vec<String>,
    /// Talk to LocalSend devices too (on unless turned off; settings from before it: on).
    #[serde(default = "on")]
    pub localsend: bool,
    /// A PIN LocalSend senders must give (empty: none).
    #[serde(default)]
    pub localsend_pin: String,
    /// Copy the members' thumbnails here, so their pictures show while they are offline.
    #[serde(default = "on")]
    pub preview_sync: bool,
    /// How large the thumbnail store may grow by copying them, in MiB.
    #[serde(default = "preview_cap_mib")]
    pub preview_cap_mib: u32,
    /// Days a finished transfer stays in the list after it ended.
    #[serde(default = "history_days")]
    pub history_days: u32,
    /// Finished transfers the list keeps at most, the newest first (unfinished ones always).
    #[serde(default = "history_count")]
    pub history_count: u32,
    pub theme: Theme,
}

fn preview_cap_mib() -> u32 {
    2048
}

fn history_days() -> u32 {
    ferry_core::History::DEFAULT.days
}

fn history_count() -> u32 {
    ferry_core::History::DEFAULT.count
}

fn on() -> bool {
    true
}

impl Settings {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("settings.json")
    }

    /// The saved settings, or defaults for a first run (a corrupt file is reported, not fatal).
    pub fn load(data_dir: &Path) -> Settings {
        let defaults = Settings {
            name: String::new(),
            download_dir: ferry_core::SpacedropConfig::default()
                .dest
                .display()
                .to_string(),
            discovery: true,
            interfaces: vec![],
            localsend: true,
            localsend_pin: String::new(),
            preview_sync: true,
            preview_cap_mib: preview_cap_mib(),
            history_days: history_days(),
            history_count: history_count(),
            theme: Theme::System,
        };
        match std::fs::read(Settings::path(data_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "settings.json is unreadable; using defaults");
                defaults
            }),
            Err(_) => defaults,
        }
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let tmp = data_dir.join(".settings.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, Settings::path(data_dir))
    }

    /// The node configuration these settings (and the environment) describe.
    pub fn node_config(&self, data_dir: &Path) -> Result<NodeConfig, String> {
        let mut cfg = NodeConfig::new(data_dir);
        // The CLI (and other front ends of this user) attach to the app's node.
        cfg.attachable = true;
        cfg.name = Some(self.name.clone()).filter(|n| !n.trim().is_empty());
        cfg.discovery = self.discovery;
        cfg.interfaces = self.interfaces.clone();
        cfg.spacedrop.dest = PathBuf::from(&self.download_dir);
        cfg.previews = ferry_core::library::media::PreviewConfig {
            sync: self.preview_sync,
            cap: u64::from(self.preview_cap_mib) << 20,
        };
        cfg.history = ferry_core::History {
            days: self.history_days,
            count: self.history_count,
        }
        .clamped();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(n) = env("FERRY_NAME") {
            cfg.name = Some(n);
        }
        if env("FERRY_NO_DISCOVERY").is_some() {
            cfg.discovery = false;
        }
        // LocalSend's multicast follows the discovery switch and interfaces (in the node).
        if self.localsend && env("FERRY_NO_LOCALSEND").is_none() {
            cfg.localsend = Some(ferry_core::LocalSendConfig {
                pin: Some(self.localsend_pin.trim().to_string()).filter(|p| !p.is_empty()),
                ..Default::default()
            });
        }
        if let Some(l) = env("FERRY_LISTEN") {
            cfg.listen = l
                .parse::<SocketAddr>()
                .map_err(|e| format!("FERRY_LISTEN: {e}"))?;
        }
        if let Some(d) = env("FERRY_DEST") {
            cfg.spacedrop.dest = PathBuf::from(d);
        }
        if let Some(i) = env("FERRY_INTERFACES") {
            cfg.interfaces = i.split(',').map(String::from).collect();
        }
        for c in env("FERRY_CONNECT")
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.is_empty())
        {
            match c.parse::<Target>() {
                Ok(Target::Addr { addr, pin }) => cfg.connect.push((addr, pin)),
                _ => return Err(format!("FERRY_CONNECT: '{c}' is not host:port")),
            }
        }
        Ok(cfg)
    }
}

/// `FERRY_DATA_DIR`, or the platform's data dir.
pub fn data_dir() -> PathBuf {
    std::env::var_os("FERRY_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(NodeConfig::default_data_dir)
}
