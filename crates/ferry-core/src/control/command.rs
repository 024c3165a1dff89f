//! The command surface: every command a front end can give a node, the capability each needs,
//! what it answers, and how it is refused. The desktop app, the CLI over the local socket and
//! members over the tunnel all speak these types.

use serde::{Deserialize, Serialize};

use crate::library::media::downloads::DownloadInfo;
use crate::library::sync::MemberSync;
use crate::library::{LibraryInfo, PairingInfo};
use crate::spacedrop::{FailedFile, LocalSendDevice, Prompt, Renamed};
use crate::TransferInfo;
use ferry_index::{EntryInfo, LocationInfo};
use ferry_p2p::PeerSnapshot;

/// What a command needs from its caller. Local front ends (this machine's user) hold every
/// capability; a member holds `Read` by membership and `Manage` or `Send` only where this node
/// granted them; `Owner` is never granted.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// This machine's own user only: prompts, pairing, grants, sending local paths.
    Owner,
    /// What membership gives: the library's locations, contents, members, sync state.
    Read,
    /// Add, rescan, rename and remove locations; rename the library.
    Manage,
    /// Spacedrop what this node holds (in the library's locations) to another device, and
    /// see and steer this node's transfers.
    Send,
}

impl Capability {
    /// The capabilities a node can grant a member.
    pub const GRANTABLE: [Capability; 2] = [Capability::Manage, Capability::Send];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Owner => "owner",
            Capability::Read => "read",
            Capability::Manage => "manage",
            Capability::Send => "send",
        }
    }

    /// A grantable capability by name.
    pub fn parse_grantable(s: &str) -> Option<Capability> {
        Capability::GRANTABLE
            .into_iter()
            .find(|c| c.as_str() == s.to_ascii_lowercase())
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One command. Libraries, locations, transfers and peers are named as a user names them
/// (name, or id or fingerprint prefix); the node resolves them. Paths are the node's own.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Who this node is.
    Status,
    /// The name this node shows peers (until it restarts).
    SetName {
        name: String,
    },
    /// Nearby Ferry peers and LocalSend devices.
    Peers,
    Ping {
        peer: String,
        count: u32,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        interval_ms: u64,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        wait_ms: u64,
    },
    /// Spacedrop `paths` to a Ferry peer or a LocalSend device, looked for up to `wait_ms`.
    Send {
        peer: String,
        paths: Vec<String>,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        wait_ms: u64,
        pin: Option<String>,
    },
    /// A page of transfers, newest first: up to `limit` (default [`TRANSFERS_PAGE`], at most
    /// [`MAX_TRANSFERS_PAGE`]) after the transfer `before` (id or unique prefix; the reply's
    /// `next` for the page after). Without either, the newest page. The node keeps the finished
    /// transfers its history setting says ([`crate::History`]) and every unfinished one.
    Transfers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
    },
    /// One transfer with every file it renamed or failed.
    Transfer {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Cancel {
        id: String,
    },
    /// Answers an open Spacedrop prompt (`id` may be left out when exactly one is open); the
    /// first answer from any front end wins.
    Answer {
        id: Option<String>,
        accept: bool,
        dest: Option<String>,
    },
    Libraries,
    CreateLibrary {
        name: String,
    },
    RenameLibrary {
        library: String,
        name: String,
    },
    DeleteLibrary {
        library: String,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        wait_ms: u64,
    },
    Members {
        library: String,
    },
    /// Starts pairing `peer` into `library`; follow `pairing` events, answer with
    /// [`Command::AnswerPairing`].
    Pair {
        peer: String,
        library: String,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        wait_ms: u64,
    },
    AnswerPairing {
        id: Option<String>,
        accept: bool,
    },
    Unpair {
        node: String,
        library: String,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        wait_ms: u64,
    },
    Locations {
        library: String,
    },
    AddLocation {
        library: String,
        path: String,
    },
    RescanLocation {
        library: String,
        location: String,
    },
    RenameLocation {
        library: String,
        location: String,
        name: String,
    },
    RemoveLocation {
        library: String,
        location: String,
    },
    /// `LOCATION[/PATH]`: a folder's entries, or the one entry a file is.
    Entries {
        library: String,
        path: String,
    },
    SyncStatus {
        library: String,
    },
    /// Downloads a member's file or folder (`LOCATION/PATH`) into `dest`, verified; follow
    /// `download` events.
    Get {
        library: String,
        path: String,
        dest: String,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        wait_ms: u64,
    },
    Grant {
        library: String,
        node: String,
        capability: Capability,
    },
    Revoke {
        library: String,
        node: String,
        capability: Capability,
    },
    /// Who holds which grant here, and the newest commands members ran here.
    Grants {
        library: String,
    },
    /// Everything a front end shows, at once (later changes arrive as events).
    Snapshot,
    /// Connects to `host:port` or `FINGERPRINT@host:port` and keeps the peer connected.
    Connect {
        address: String,
    },
    /// A LocalSend send again, with the PIN its receiver asked for.
    ResendWithPin {
        id: String,
        pin: String,
    },
    /// Renamed and failed files `offset..offset + limit` of a transfer (events list the first).
    TransferFiles {
        id: String,
        offset: u32,
        limit: u32,
    },
    /// Entries `offset..offset + limit` of folder `dir` of a location (ids, not names).
    Page {
        library: String,
        location: String,
        dir: String,
        offset: u32,
        limit: u32,
    },
    /// One entry by id, and where it is on this node's disk.
    Entry {
        library: String,
        entry: String,
    },
    /// Whether a member's location has its thumbnails copied to this node.
    SetLocationPreviews {
        library: String,
        location: String,
        on: bool,
    },
    /// *Save to this device*: an entry (by id) into this node's download folder, verified.
    SaveEntry {
        library: String,
        entry: String,
    },
    PauseDownload {
        id: String,
    },
    ResumeDownload {
        id: String,
    },
    CancelDownload {
        id: String,
    },
    /// A `ferry://` answer: `thumb/LIB/CONTENT` or `file/LIB/ENTRY`, with an HTTP range.
    Media {
        path: String,
        range: Option<String>,
        head: bool,
    },
    /// Changes what a running node may change without a restart (`None`: unchanged).
    Configure {
        name: Option<String>,
        dest: Option<String>,
        preview_sync: Option<bool>,
        preview_cap_mib: Option<u32>,
        /// Days a finished transfer stays listed after it ended (see [`crate::History`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_days: Option<u32>,
        /// Finished transfers kept at most, the newest first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_count: Option<u32>,
    },
    /// Runs `command` on the member `node` of `library` (any library both are in when
    /// `None`), with what that node granted this one. Never runs it here.
    Remote {
        node: String,
        library: Option<String>,
        command: Box<Command>,
    },
}

impl Command {
    /// The capability the command needs. No wildcard arm: a new command does not compile
    /// until it says what it needs (deny by default).
    pub fn capability(&self) -> Capability {
        use Capability::*;
        match self {
            Command::Status
            | Command::Libraries
            | Command::Members { .. }
            | Command::Locations { .. }
            | Command::Entries { .. }
            | Command::Page { .. }
            | Command::SyncStatus { .. } => Read,
            Command::RenameLibrary { .. }
            | Command::AddLocation { .. }
            | Command::RescanLocation { .. }
            | Command::RenameLocation { .. }
            | Command::RemoveLocation { .. } => Manage,
            Command::Send { .. }
            | Command::Transfers { .. }
            | Command::Transfer { .. }
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Cancel { .. }
            | Command::TransferFiles { .. } => Send,
            Command::Peers
            | Command::SetName { .. }
            | Command::Ping { .. }
            | Command::Answer { .. }
            | Command::CreateLibrary { .. }
            | Command::DeleteLibrary { .. }
            | Command::Pair { .. }
            | Command::AnswerPairing { .. }
            | Command::Unpair { .. }
            | Command::Get { .. }
            | Command::Grant { .. }
            | Command::Revoke { .. }
            | Command::Grants { .. }
            | Command::Remote { .. }
            | Command::Snapshot
            | Command::Connect { .. }
            | Command::ResendWithPin { .. }
            | Command::Entry { .. }
            | Command::SetLocationPreviews { .. }
            | Command::SaveEntry { .. }
            | Command::PauseDownload { .. }
            | Command::ResumeDownload { .. }
            | Command::CancelDownload { .. }
            | Command::Media { .. }
            | Command::Configure { .. } => Owner,
        }
    }

    /// Whether the command is SQLite and disk work, run on a blocking thread rather than an
    /// async one. (The others wait on the network, or are a lookup in memory.)
    pub fn blocking(&self) -> bool {
        matches!(
            self,
            Command::Libraries
                | Command::CreateLibrary { .. }
                | Command::RenameLibrary { .. }
                | Command::Members { .. }
                | Command::Locations { .. }
                | Command::AddLocation { .. }
                | Command::RescanLocation { .. }
                | Command::RenameLocation { .. }
                | Command::RemoveLocation { .. }
                | Command::Entries { .. }
                | Command::Page { .. }
                | Command::Entry { .. }
                | Command::SetLocationPreviews { .. }
                | Command::SyncStatus { .. }
                | Command::Transfers { .. }
                | Command::Transfer { .. }
                | Command::TransferFiles { .. }
                | Command::Grant { .. }
                | Command::Revoke { .. }
                | Command::Grants { .. }
                | Command::Snapshot
        )
    }

    /// The library the command is about, as the caller named it.
    pub fn library_mut(&mut self) -> Option<&mut String> {
        match self {
            Command::RenameLibrary { library, .. }
            | Command::DeleteLibrary { library, .. }
            | Command::Members { library }
            | Command::Pair { library, .. }
            | Command::Unpair { library, .. }
            | Command::Locations { library }
            | Command::AddLocation { library, .. }
            | Command::RescanLocation { library, .. }
            | Command::RenameLocation { library, .. }
            | Command::RemoveLocation { library, .. }
            | Command::Entries { library, .. }
            | Command::SyncStatus { library }
            | Command::Get { library, .. }
            | Command::Grant { library, .. }
            | Command::Revoke { library, .. }
            | Command::Grants { library }
            | Command::Page { library, .. }
            | Command::Entry { library, .. }
            | Command::SetLocationPreviews { library, .. }
            | Command::SaveEntry { library, .. } => Some(library),
            Command::Remote { library, .. } => library.as_mut(),
            Command::Status
            | Command::SetName { .. }
            | Command::Peers
            | Command::Ping { .. }
            | Command::Send { .. }
            | Command::Transfers { .. }
            | Command::Transfer { .. }
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Cancel { .. }
            | Command::Answer { .. }
            | Command::Libraries
            | Command::CreateLibrary { .. }
            | Command::AnswerPairing { .. }
            | Command::Snapshot
            | Command::Connect { .. }
            | Command::ResendWithPin { .. }
            | Command::TransferFiles { .. }
            | Command::PauseDownload { .. }
            | Command::ResumeDownload { .. }
            | Command::CancelDownload { .. }
            | Command::Media { .. }
            | Command::Configure { .. } => None,
        }
    }

    /// The command's name, for logs (`add_location`).
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Transfers a page lists when the command does not say.
pub const TRANSFERS_PAGE: u32 = 100;
/// Most transfers one page lists.
pub const MAX_TRANSFERS_PAGE: u32 = 2000;

/// Who this node is.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub short_id: String,
    pub name: String,
    pub listen: String,
    pub discovery: bool,
    pub version: String,
}

/// Whether a change reached a member now.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reached {
    pub member: crate::MemberInfo,
    pub error: Option<String>,
}

/// A grant as listed.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantInfo {
    pub node: String,
    pub name: String,
    pub capability: Capability,
    /// Unix seconds.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub granted: i64,
}

/// A command a member ran on this node.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteAction {
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub at: i64,
    pub node: String,
    pub name: String,
    pub command: String,
    /// `ok`, or why it was refused or failed.
    pub outcome: String,
}

/// A library's locations (a snapshot holds them per library).
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryLocations {
    pub library: String,
    pub locations: Vec<LocationInfo>,
}

/// Everything a front end shows, at once.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSnapshot {
    pub status: NodeStatus,
    pub peers: Vec<PeerSnapshot>,
    /// Every unfinished transfer and the newest others, newest first.
    pub transfers: Vec<TransferInfo>,
    /// More finished transfers follow: list them `before` this id ([`Command::Transfers`]).
    #[serde(default)]
    pub transfers_next: Option<String>,
    pub prompts: Vec<Prompt>,
    pub libraries: Vec<LibraryInfo>,
    pub locations: Vec<LibraryLocations>,
    pub pairings: Vec<PairingInfo>,
    pub localsend: Vec<LocalSendDevice>,
    /// Downloads of members' files since the node started.
    pub downloads: Vec<DownloadInfo>,
    /// Where received files go.
    pub dest: String,
}

/// Bytes, as base64 in JSON (a `ferry://` answer over the local socket).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// What a command answers.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Done,
    Status {
        status: NodeStatus,
    },
    Peers {
        peers: Vec<PeerSnapshot>,
        localsend: Vec<LocalSendDevice>,
    },
    Pinged {
        peer: String,
        name: String,
        rtts_ms: Vec<f64>,
    },
    Sent {
        transfer: TransferInfo,
        /// The receiver's name, and whether it is a LocalSend device.
        to: String,
        localsend: bool,
    },
    Transfers {
        transfers: Vec<TransferInfo>,
        /// More follow: list `before` this id for the next page (`None`: this is the last).
        #[serde(default)]
        next: Option<String>,
    },
    Transfer {
        transfer: TransferInfo,
        renamed: Vec<Renamed>,
        failed: Vec<FailedFile>,
    },
    Libraries {
        libraries: Vec<LibraryInfo>,
    },
    Library {
        library: LibraryInfo,
    },
    Deleted {
        name: String,
        reached: Vec<Reached>,
    },
    Unpaired {
        library: LibraryInfo,
        reached: Vec<Reached>,
    },
    /// A pairing started; its code and outcome arrive as `pairing` events.
    Pairing {
        id: String,
    },
    Locations {
        locations: Vec<LocationInfo>,
    },
    Location {
        location: LocationInfo,
    },
    Entries {
        location: LocationInfo,
        entries: Vec<EntryInfo>,
    },
    SyncStatus {
        members: Vec<MemberSync>,
    },
    Download {
        download: DownloadInfo,
    },
    Grants {
        grants: Vec<GrantInfo>,
        log: Vec<RemoteAction>,
    },
    Snapshot {
        snapshot: Box<NodeSnapshot>,
    },
    Peer {
        peer: PeerSnapshot,
    },
    Page {
        page: ferry_index::Page,
    },
    Entry {
        entry: EntryInfo,
        path: String,
    },
    /// A `ferry://` answer: status, headers, body.
    Media {
        status: u16,
        headers: Vec<(String, String)>,
        #[cfg_attr(feature = "specta", specta(type = String))]
        body: Bytes,
    },
}

/// Why a command was not carried out. Typed, so a front end can say exactly what is missing.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    #[error("refused: this node has not granted you \"{capability}\" (ferry grant on it)")]
    NotGranted { capability: Capability },
    #[error("refused: only this device's own user may do that")]
    OwnerOnly,
    #[error("refused: this session is for another library")]
    OtherLibrary,
    #[error("refused: not a member of this library (any more)")]
    NotMember,
    #[error("this needs a running node")]
    NeedsNode,
    #[error("{message}")]
    Failed { message: String },
}

impl Refusal {
    pub fn failed(e: impl std::fmt::Display) -> Refusal {
        Refusal::Failed {
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_commands_are_never_grantable() {
        let owner_only = [
            Command::Peers,
            Command::Answer {
                id: None,
                accept: true,
                dest: None,
            },
            Command::Grant {
                library: "l".into(),
                node: "n".into(),
                capability: Capability::Manage,
            },
            Command::Remote {
                node: "n".into(),
                library: None,
                command: Box::new(Command::Status),
            },
        ];
        for c in owner_only {
            assert_eq!(c.capability(), Capability::Owner, "{c:?}");
            assert!(!Capability::GRANTABLE.contains(&c.capability()));
        }
    }

    #[test]
    fn grantable_names_parse_and_others_do_not() {
        assert_eq!(
            Capability::parse_grantable("Manage"),
            Some(Capability::Manage)
        );
        assert_eq!(Capability::parse_grantable("send"), Some(Capability::Send));
        assert_eq!(Capability::parse_grantable("owner"), None);
        assert_eq!(Capability::parse_grantable("read"), None);
    }

    #[test]
    fn media_bytes_travel_as_base64_and_come_back_whole() {
        let r = Reply::Media {
            status: 206,
            headers: vec![("Content-Range".into(), "bytes 0-2/9".into())],
            body: Bytes(vec![0, 255, 7]),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains(r#""body":"AP8H""#), "{s}");
        let Reply::Media { body, .. } = serde_json::from_str(&s).unwrap() else {
            panic!()
        };
        assert_eq!(body.0, vec![0, 255, 7]);
        assert!(serde_json::from_str::<Reply>(&s.replace("AP8H", "not base64!")).is_err());
    }

    #[test]
    fn commands_round_trip_as_tagged_json() {
        let c = Command::AddLocation {
            library: "Photos".into(),
            path: "/srv/photos".into(),
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"add_location","library":"Photos","path":"/srv/photos"}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&s).unwrap(), c);
        assert_eq!(c.name(), "add_location");
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"format_disk"}"#).is_err());
    }
}
