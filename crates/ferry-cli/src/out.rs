//! Everything the CLI prints: events and results as text for people, or as JSON lines.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use ferry_core::library::wire::MemberState;
use ferry_core::library::PairingRole;
use ferry_core::spacedrop::{FailedFile, Prompt, Renamed, Via};
use ferry_core::{
    Event, LibraryInfo, PairingInfo, PairingState, PeerId, PeerSnapshot, TransferInfo,
    TransferState,
};
use serde_json::json;

/// `println!` for people: the line goes through [`clean`] first.
macro_rules! say {
    ($($t:tt)*) => {
        println!("{}", $crate::out::clean(&format!($($t)*)))
    };
}
pub(crate) use say;

/// Text as a terminal should show it: the hidden characters ([`ferry_core::text::HIDDEN`]:
/// controls, separators, bidi and zero-width formatting) escaped (`\u{1b}`), but the newlines
/// of our own multi-line messages. Names, reasons and device names come from peers; printed
/// raw, a peer's escape sequences could rewrite what the terminal shows, a prompt among it.
pub fn clean(s: &str) -> Cow<'_, str> {
    ferry_core::text::escaped(s, &['\n'])
}

/// The first 8 characters of an id, to show (a peer's id may be anything: never a panic).
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub struct Out {
    pub json: bool,
    /// Progress redraws one line on a terminal; elsewhere it prints a line per update.
    tty: bool,
}

pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

fn eta(secs: Option<f64>) -> String {
    match secs {
        Some(s) if s.is_finite() && s < 360_000.0 => {
            let s = s.round() as u64;
            if s >= 60 {
                format!("{}m{:02}s", s / 60, s % 60)
            } else {
                format!("{s}s")
            }
        }
        _ => "--".into(),
    }
}

/// The snake_case name serde gives a unit enum variant.
fn plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out {
            json,
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn line(&self, v: serde_json::Value) {
        println!("{v}"); // JSON escapes control characters itself
    }

    pub fn event(&self, e: &Event) {
        if self.json {
            match serde_json::to_string(e) {
                Ok(s) => println!("{s}"), // JSON: escaped already
                Err(err) => tracing::error!(%err, "event not serializable"),
            }
            return;
        }
        match e {
            Event::NodeStarted {
                id,
                name,
                listen,
                discovery,
                ..
            } => {
                say!("Ferry node \"{name}\"");
                say!("  fingerprint {id}");
                say!(
                    "  listening on {listen} (udp){}",
                    if *discovery { "" } else { ", discovery off" }
                );
            }
            Event::PeerFound { peer } => say!("+ {}", describe(peer)),
            Event::PeerChanged { peer } => say!("~ {}", describe(peer)),
            Event::PeerLost { peer, reason } => {
                say!("- {} ({})", describe(peer), plain(reason))
            }
            Event::SpacedropPrompt { prompt } => self.prompt(prompt),
            Event::PromptResolved { transfer, outcome } => {
                say!("  prompt {} {}", short(transfer), plain(outcome))
            }
            Event::Transfer { transfer } => self.progress(transfer),
            Event::Library { library } => say!("{}", library_line(library)),
            Event::LibraryRemoved { id } => {
                say!("library [{}] removed", short(id))
            }
            Event::Pairing { pairing } => say!("{}", pairing_line(pairing)),
            Event::Location { location, .. } => say!(
                "location {}{} [{}]: {} files, {} with content ids{}",
                location.path,
                crate::contents::owner_suffix(location),
                if location.online {
                    location.state.as_str()
                } else {
                    "offline"
                },
                location.files,
                location.identified,
                location
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            Event::LocalSendDevices { devices } => say!(
                "LocalSend devices: {}",
                if devices.is_empty() {
                    "none".to_string()
                } else {
                    devices
                        .iter()
                        .map(|d| format!("{} ({}, {})", d.alias, d.short, d.address))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            Event::Sync { progress: p } => say!(
                "sync [{}] from {}: {} {}/{} changes{}",
                short(&p.library),
                p.member.short(),
                p.state.replace('_', " "),
                p.received,
                p.total,
                p.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
            Event::LocationRemoved { location, .. } => {
                say!("location [{}] removed", short(location))
            }
            Event::Index { progress: p } => {
                if p.phase == "done" || p.phase == "failed" {
                    say!(
                        "index [{}] {}{}",
                        short(&p.location),
                        p.phase,
                        p.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )
                }
            }
            Event::ContentsChanged { .. } | Event::Download { .. } => {}
            Event::NodeStopped => say!("stopped"),
        }
    }

    fn prompt(&self, p: &Prompt) {
        let names = p.first_names.join(", ");
        let more = if p.files > p.first_names.len() {
            ", …"
        } else {
            ""
        };
        say!(
            "\n? {} ({}) wants to send you {} file{} ({}): {names}{more}",
            if p.peer_name.is_empty() {
                "A peer"
            } else {
                &p.peer_name
            },
            p.peer_short,
            p.files,
            if p.files == 1 { "" } else { "s" },
            bytes(p.bytes)
        );
        if let Via::LocalSend {
            verified, address, ..
        } = &p.via
        {
            say!(
                "  a LocalSend device at {address}, certificate {}: not a paired or Ferry-verified device",
                if *verified { "shown" } else { "claimed, not shown" }
            );
        }
        if p.folders > 0 && !p.first_files.is_empty() {
            let more = if p.files > p.first_files.len() {
                ", …"
            } else {
                ""
            };
            say!(
                "  in {} folder{}: {}{more}",
                p.folders,
                if p.folders == 1 { "" } else { "s" },
                p.first_files.join(", ")
            );
        }
        say!(
            "  Accept? y (to the default folder), y DIR, or n — expires in {}s [{}]",
            p.expires_in_ms / 1000,
            short(&p.transfer)
        );
    }

    /// One transfer's state: a progress line while it runs, a summary when it ends.
    pub fn progress(&self, t: &TransferInfo) {
        if self.json {
            self.line(json!({"type": "transfer", "transfer": t}));
            return;
        }
        let who = peer_label(t);
        let arrow = match t.direction {
            ferry_core::spacedrop::store::Direction::Send => format!("→ {who}"),
            ferry_core::spacedrop::store::Direction::Receive => format!("← {who}"),
        };
        let pct = if t.bytes_total > 0 {
            t.bytes_done as f64 * 100.0 / t.bytes_total as f64
        } else {
            100.0
        };
        let body = match &t.state {
            TransferState::Waiting => format!("{arrow}: waiting for them to accept…"),
            TransferState::Transferring | TransferState::Paused { .. } => format!(
                "{arrow}: {pct:5.1}%  {} / {}  {}/{} files  {}/s  ETA {}{}",
                bytes(t.bytes_done),
                bytes(t.bytes_total),
                t.files_done,
                t.files_total,
                bytes(t.speed_bps as u64),
                eta(t.eta_secs),
                match &t.state {
                    TransferState::Paused { by } => format!(
                        "  [paused by {}]",
                        if plain(by) == "local" { "you" } else { "them" }
                    ),
                    _ => String::new(),
                }
            ),
            TransferState::Interrupted { reason } => format!(
                "{arrow}: interrupted ({reason}); resumes when both sides are back [{}]",
                short(&t.id)
            ),
            TransferState::Done => format!(
                "{arrow}: done — {} files, {}, {}",
                t.files_done,
                bytes(t.bytes_total),
                match t.via {
                    Via::Ferry => "every file verified (BLAKE3)",
                    Via::LocalSend { .. } => "over LocalSend (sizes checked, SHA-256 where sent)",
                }
            ),
            TransferState::Failed { reason } => format!("{arrow}: failed — {reason}"),
            TransferState::Rejected { reason } => format!("{arrow}: rejected — {reason}"),
            TransferState::Cancelled { by } => format!(
                "{arrow}: cancelled by {}",
                if plain(by) == "local" { "you" } else { "them" }
            ),
        };
        if self.tty && !t.state.is_final() {
            print!("\r\x1b[2K{}", clean(&body));
            let _ = std::io::stdout().flush();
        } else {
            let redraw = if self.tty { "\r\x1b[2K" } else { "" };
            println!("{redraw}{}", clean(&body));
        }
        if t.state.is_final() {
            for r in t.renamed.iter() {
                say!("  renamed: {} → {} ({})", r.original, r.local, r.reason);
            }
            more(t, t.renamed_count, t.renamed.len(), "renamed");
            for f in t.failed.iter() {
                say!("  failed: {} — {}", f.path, f.reason);
            }
            more(t, t.failed_count, t.failed.len(), "failed");
            if let (TransferState::Done, Some(dest)) = (&t.state, &t.dest) {
                say!("  saved in {dest}");
            }
        }
    }

    /// A download's progress (`ferry get`).
    pub fn get_progress(&self, p: &ferry_core::library::media::get::GetProgress) {
        if self.json {
            self.line(json!({"type": "get", "progress": p}));
            return;
        }
        let pct = if p.total_bytes > 0 {
            p.bytes as f64 * 100.0 / p.total_bytes as f64
        } else {
            100.0
        };
        let body = format!(
            "← {pct:5.1}%  {} / {}  {}/{} files  {}",
            bytes(p.bytes),
            bytes(p.total_bytes),
            p.files,
            p.total_files,
            p.current
        );
        if self.tty {
            print!("\r\x1b[2K{}", clean(&body));
            let _ = std::io::stdout().flush();
        } else {
            say!("{body}");
        }
    }

    pub fn get_done(
        &self,
        d: &ferry_core::library::media::downloads::DownloadInfo,
        took: Duration,
    ) {
        let (path, resumed) = match &d.state {
            ferry_core::library::media::downloads::DownloadState::Done { path, resumed } => {
                (path.as_str(), *resumed)
            }
            _ => ("", 0),
        };
        let (files, size) = (d.progress.total_files, d.progress.total_bytes);
        if self.json {
            let report = json!({"path": path, "files": files, "bytes": size, "resumed": resumed});
            self.line(json!({"type": "got", "report": report, "secs": took.as_secs_f64()}));
            return;
        }
        let redraw = if self.tty { "\r\x1b[2K" } else { "" };
        println!(
            "{redraw}{}",
            clean(&format!(
                "done — {files} files, {}, every file verified (BLAKE3){} in {:.1}s\n  saved as {path}",
                bytes(size),
                if resumed > 0 {
                    format!(", {} resumed", bytes(resumed))
                } else {
                    String::new()
                },
                took.as_secs_f64(),
            ))
        );
    }

    /// Who a node is (`ferry id`): printed as the event a node starts with.
    pub fn status(&self, s: &ferry_core::control::NodeStatus) {
        let Ok(id) = s.id.parse() else { return };
        self.event(&Event::NodeStarted {
            id,
            short_id: s.short_id.clone(),
            name: s.name.clone(),
            listen: s
                .listen
                .parse()
                .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            discovery: s.discovery,
        });
    }

    /// A page of transfers (`older`: one after the newest); `next`: the last one's id when
    /// more follow.
    pub fn transfers(&self, list: &[TransferInfo], next: Option<&str>, older: bool) {
        if self.json {
            self.line(json!({"type": "transfers", "transfers": list, "next": next}));
            return;
        }
        if list.is_empty() {
            say!(
                "{}",
                if older {
                    "No older transfers."
                } else {
                    "No transfers yet."
                }
            );
            return;
        }
        say!(
            "{:<10} {:<4} {:<16} {:<12} {:>9} {:>11}  DETAIL",
            "ID",
            "DIR",
            "PEER",
            "STATE",
            "FILES",
            "SIZE"
        );
        for t in list {
            let detail = match &t.state {
                TransferState::Interrupted { reason }
                | TransferState::Failed { reason }
                | TransferState::Rejected { reason } => reason.clone(),
                _ => t.dest.clone().unwrap_or_default(),
            };
            let dir = match t.direction {
                ferry_core::spacedrop::store::Direction::Send => "out",
                ferry_core::spacedrop::store::Direction::Receive => "in",
            };
            let who = peer_label(t);
            say!(
                "{:<10} {:<4} {:<16} {:<12} {:>9} {:>11}  {detail}",
                short(&t.id),
                dir,
                who,
                t.state.name(),
                format!("{}/{}", t.files_done, t.files_total),
                bytes(t.bytes_total)
            );
        }
        if let Some(next) = next {
            say!("More: ferry transfers --before {}", short(next));
        }
    }

    pub fn library(&self, l: &LibraryInfo) {
        if self.json {
            self.line(json!({"type": "library", "library": l}));
        } else {
            say!("{}", library_line(l));
        }
    }

    pub fn libraries(&self, list: &[LibraryInfo]) {
        if self.json {
            self.line(json!({"type": "libraries", "libraries": list}));
            return;
        }
        if list.is_empty() {
            say!("No libraries yet (ferry library create NAME).");
        }
        for l in list {
            say!("{}", library_line(l));
        }
    }

    pub fn members(&self, l: &LibraryInfo) {
        if self.json {
            self.line(json!({"type": "library", "library": l}));
            return;
        }
        say!("{}", library_line(l));
        say!(
            "  {:<20} {:<14} {:<8} LAST SEEN",
            "NAME",
            "FINGERPRINT",
            "STATE"
        );
        let now = ferry_util::unix_now();
        for m in &l.members {
            let seen = match (m.me, m.last_seen) {
                (true, _) => "this device".to_string(),
                (_, Some(t)) => ago(now.saturating_sub(t)),
                (_, None) => "never".into(),
            };
            say!(
                "  {:<20} {:<14} {:<8} {seen}",
                if m.name.is_empty() { "-" } else { &m.name },
                m.short_id,
                plain(&m.state),
            );
        }
    }

    pub fn peers(&self, peers: &[PeerSnapshot]) {
        if self.json {
            self.line(json!({"type": "peers", "peers": peers}));
            return;
        }
        if peers.is_empty() {
            say!("No one nearby yet. Is Ferry running on the other device? (--connect HOST:PORT works without discovery)");
            return;
        }
        say!(
            "{:<20} {:<14} {:<8} {:<10} {:>9}  ADDRESSES",
            "NAME",
            "FINGERPRINT",
            "OS",
            "STATE",
            "RTT"
        );
        for p in peers {
            let rtt = p
                .rtt_ms
                .map(|r| format!("{r:.2} ms"))
                .unwrap_or_else(|| "-".into());
            let addrs = p
                .addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            say!(
                "{:<20} {:<14} {:<8} {:<10} {:>9}  {addrs}",
                p.name,
                p.short_id,
                p.os,
                plain(&p.state),
                rtt
            );
        }
    }

    /// LocalSend devices heard (after the Ferry peers; nothing when there are none).
    pub fn localsend_devices(&self, devices: &[ferry_core::spacedrop::LocalSendDevice]) {
        if self.json {
            self.line(json!({"type": "localsend_devices", "devices": devices}));
            return;
        }
        if devices.is_empty() {
            return;
        }
        say!(
            "\n{:<20} {:<14} {:<10} {:<9} ADDRESS   (LocalSend: not Ferry-verified identities)",
            "LOCALSEND DEVICE",
            "CERTIFICATE",
            "TYPE",
            "SHOWN"
        );
        for d in devices {
            say!(
                "{:<20} {:<14} {:<10} {:<9} {}",
                d.alias,
                d.short,
                d.device_type,
                if d.verified { "yes" } else { "claimed" },
                d.address
            );
        }
    }

    pub fn ping(&self, id: &PeerId, name: &str, rtts: &[Duration]) {
        let ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        for (seq, m) in ms.iter().enumerate() {
            if self.json {
                self.line(json!({"type": "ping_reply", "peer": id, "name": name, "seq": seq, "rtt_ms": m}));
            } else {
                say!(
                    "reply from {name} ({}): seq={seq} time={m:.3} ms",
                    id.short()
                );
            }
        }
        let (min, max) = ms
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let avg = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
        if self.json {
            self.line(json!({"type": "ping_summary", "peer": id, "count": ms.len(), "min_ms": min, "avg_ms": avg, "max_ms": max}));
        } else {
            say!(
                "{} replies, rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms",
                ms.len()
            );
        }
    }

    /// A remark for people (silent in JSON mode, where events say it all).
    /// `ferry transfers show`: the transfer's line, then every renamed and failed file.
    pub fn transfer_report(&self, t: &TransferInfo, renamed: &[Renamed], failed: &[FailedFile]) {
        if self.json {
            self.line(
                json!({"type": "transfer", "transfer": t, "renamed": renamed, "failed": failed}),
            );
            return;
        }
        self.transfers(std::slice::from_ref(t), None, false);
        if !renamed.is_empty() {
            say!("\n{} renamed (as sent → as saved here):", renamed.len());
            for r in renamed {
                say!("  {} → {} ({})", r.original, r.local, r.reason);
            }
        }
        if !failed.is_empty() {
            say!("\n{} failed:", failed.len());
            for f in failed {
                say!("  {} — {}", f.path, f.reason);
            }
        }
    }

    /// A long-running command attached to the node running here (`{"type": "attached",
    /// "node": …}` in JSON: a script knows from then on that prompts reach it).
    pub fn attached(&self, n: &ferry_core::control::NodeStatus, dest: Option<&std::path::Path>) {
        if self.json {
            self.line(json!({"type": "attached", "node": n}));
            return;
        }
        say!(
            "Attached to the Ferry node \"{}\" running here ({}); prompts can be answered here{}.",
            clean(&n.name),
            n.short_id,
            dest.map(|d| format!(", into {}", d.display()))
                .unwrap_or_default()
        );
    }

    pub fn note(&self, s: &str) {
        if !self.json {
            say!("{s}");
        }
    }

    pub fn error(&self, e: &anyhow::Error) {
        if self.json {
            self.line(json!({"type": "error", "message": format!("{e:#}")}));
        } else {
            eprintln!("ferry: {}", clean(&format!("{e:#}")));
        }
    }
}

/// The end of a list an event carries only the start of (see `spacedrop::preview`).
fn more(t: &TransferInfo, count: usize, listed: usize, what: &str) {
    if count > listed {
        say!(
            "  … and {} more {what} (`ferry transfers show {}` lists them all)",
            count - listed,
            short(&t.id)
        );
    }
}

/// The peer of a transfer as people know it: its name, or its short fingerprint.
fn peer_label(t: &TransferInfo) -> String {
    if t.peer_name.is_empty() {
        t.peer.short()
    } else {
        t.peer_name.clone()
    }
}

pub fn ago(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

fn describe(p: &PeerSnapshot) -> String {
    let addrs = p
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} ({}) {} {} [{}]",
        p.name,
        p.short_id,
        p.os,
        plain(&p.state),
        addrs
    )
}

/// Text for a pairing event (the CLI's prompt for a responder).
fn pairing_line(p: &PairingInfo) -> String {
    let who = if p.peer_name.is_empty() {
        p.peer_short.clone()
    } else {
        format!("{} ({})", p.peer_name, p.peer_short)
    };
    let code = p.code.as_deref().unwrap_or("");
    match (&p.state, p.role) {
        (PairingState::Connecting, PairingRole::Initiator) => {
            format!("Pairing with {who} into \"{}\"…", p.library_name)
        }
        (PairingState::Connecting, PairingRole::Responder) => {
            format!("{who} is starting to pair with this device…")
        }
        (PairingState::Confirm { expires_in_ms }, PairingRole::Initiator) => format!(
            "\n  Code: {code}\n? Does {who} show the same code? y / n — expires in {}s [{}]",
            expires_in_ms / 1000,
            short(&p.id)
        ),
        (PairingState::Confirm { expires_in_ms }, PairingRole::Responder) => format!(
            "\n? {who} wants to add this device to library \"{}\".\n  Code: {code}\n  Accept if the other device shows the same code: y / n — expires in {}s [{}]",
            p.library_name,
            expires_in_ms / 1000,
            short(&p.id)
        ),
        (PairingState::WaitingForPeer, _) => format!("  confirmed here; waiting for {who}…"),
        (PairingState::Done, _) => format!("Paired with {who}: library \"{}\".", p.library_name),
        (PairingState::Failed { reason }, _) => format!("Pairing with {who} failed: {reason}"),
    }
}

/// The text for a library event.
fn library_line(l: &LibraryInfo) -> String {
    let active = l
        .members
        .iter()
        .filter(|m| m.state == MemberState::Member)
        .count();
    format!(
        "library \"{}\" [{}]: {active} member{}{}{}",
        l.name,
        short(&l.id),
        if active == 1 { "" } else { "s" },
        if l.pending {
            " (join not yet confirmed)"
        } else {
            ""
        },
        if l.removed {
            " — this device was removed"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn a_peers_escape_sequences_reach_the_terminal_escaped() {
        assert_eq!(clean("photo.jpg"), "photo.jpg");
        assert!(matches!(
            clean("two\nlines ✓"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            clean("a\x1b[2K\rb\u{7}c\u{9b}d"),
            "a\\u{1b}[2K\\u{d}b\\u{7}c\\u{9b}d"
        );
        // A right-to-left override makes "txt.exe" read as "exe.txt".
        assert_eq!(clean("invoice\u{202e}txt.exe"), "invoice\\u{202e}txt.exe");
        // A zero-width space and a line separator, as the app shows them.
        assert_eq!(clean("a\u{200b}b\u{2028}c"), "a\\u{200b}b\\u{2028}c");
    }
}
