//! What each command does. The finding of things by the names users give them (a transfer by
//! id prefix, a member by name, `LOCATION/PATH`) lives here, once, for every front end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_index::{EntryInfo, EntryKind, LocationInfo};
use ferry_p2p::{P2p, PeerId};

use super::command::{
    Bytes, Command, GrantInfo, LibraryLocations, NodeSnapshot, NodeStatus, Reached, Refusal,
    RemoteAction, Reply, MAX_TRANSFERS_PAGE, TRANSFERS_PAGE,
};
use super::{Caller, Engine, Live};
use crate::library::contents::parse_loc;
use crate::library::wire::LibraryId;
use crate::spacedrop::wire::TransferId;
use crate::spacedrop::TransfersPage;
use crate::target::{self, Target, TargetError};
use crate::{Decision, MemberInfo, PairingState, TransferInfo};

type R<T> = Result<T, Refusal>;

fn failed(e: impl std::fmt::Display) -> Refusal {
    Refusal::failed(e)
}

fn ms(ms: u64) -> Duration {
    // A front end's wait is bounded: nothing holds a call for more than ten minutes.
    Duration::from_millis(ms.min(600_000))
}

impl Engine {
    fn need_live(&self) -> R<&Live> {
        self.live.as_ref().ok_or(Refusal::NeedsNode)
    }

    fn lib(&self, q: &str) -> R<LibraryId> {
        self.libraries.find(q).map_err(failed)
    }

    /// The data dir's transfer store, for a command run without a node (`None`: none yet).
    fn offline_store(&self) -> R<Option<crate::spacedrop::store::Store>> {
        let path = self.data_dir.join("ferry.db");
        if !path.exists() {
            return Ok(None);
        }
        crate::spacedrop::store::Store::open(&path)
            .map(Some)
            .map_err(failed)
    }

    /// Up to `limit` transfers, newest first, after the transfer `before` names.
    fn transfers_page(&self, before: Option<&str>, limit: usize) -> R<TransfersPage> {
        let before = match before {
            Some(b) => Some(tid(&self.transfer(b)?)?),
            None => None,
        };
        if let Some(live) = &self.live {
            return live
                .spacedrop
                .transfers_page(before.as_ref(), limit)
                .map_err(failed);
        }
        match self.offline_store()? {
            Some(store) => {
                crate::spacedrop::transfers_page(&store, before.as_ref(), limit).map_err(failed)
            }
            None => Ok(TransfersPage {
                transfers: vec![],
                next: None,
            }),
        }
    }

    /// A transfer by its id or a unique prefix of it.
    fn transfer(&self, id: &str) -> R<TransferInfo> {
        let prefix = id.to_ascii_lowercase();
        let hits = match &self.live {
            Some(live) => live.spacedrop.find_transfers(&prefix),
            None => match self.offline_store()? {
                Some(store) => store
                    .summaries_by_prefix(&prefix)
                    .map_err(failed)?
                    .into_iter()
                    .map(crate::spacedrop::info_from_summary)
                    .collect(),
                None => vec![],
            },
        };
        the_one(hits, || format!("no transfer {id}"), "transfers")
    }

    pub(super) fn status(&self) -> NodeStatus {
        let me = self.libraries.me();
        let (name, listen, discovery) = match &self.live {
            Some(l) => (
                l.p2p.info().name,
                l.p2p
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                l.discovery,
            ),
            None => (
                gethostname::gethostname().to_string_lossy().into_owned(),
                String::new(),
                false,
            ),
        };
        NodeStatus {
            id: me.fingerprint(),
            short_id: me.short(),
            name,
            listen,
            discovery,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// `LOCATION[/PATH]` of a library: its location, and the entry PATH names (`None` for the
    /// location itself). Locations match by name, id prefix or path, the longest first.
    fn resolve_path(&self, lib: &LibraryId, path: &str) -> R<(LocationInfo, Option<EntryInfo>)> {
        let c = self.libraries.contents();
        let path = path.trim_matches('/');
        let mut found: Option<(LocationInfo, String)> = None;
        for l in c.locations(lib).map_err(failed)? {
            for key in [
                l.name.as_str(),
                &l.id[..8.min(l.id.len())],
                l.path.trim_start_matches('/'),
            ] {
                if !key.is_empty() && (path == key || path.starts_with(&format!("{key}/"))) {
                    let rest = path[key.len()..].trim_start_matches('/').to_string();
                    if found.as_ref().is_none_or(|(_, r)| rest.len() < r.len()) {
                        found = Some((l.clone(), rest));
                    }
                }
            }
        }
        let Some((l, rest)) = found else {
            return Err(failed(format!("no location matches \"{path}\"")));
        };
        if rest.is_empty() {
            return Ok((l, None));
        }
        let parent = rest.rsplit_once('/').map_or("", |(p, _)| p);
        let name = rest.rsplit('/').next().unwrap_or(&rest);
        let loc = parse_loc(&l.id).map_err(failed)?;
        let hit = c
            .list(lib, &loc, parent)
            .map_err(failed)?
            .into_iter()
            .find(|e| e.name == name);
        match hit {
            Some(e) => Ok((l, Some(e))),
            None => Err(failed(format!("{} has no \"{rest}\"", l.name))),
        }
    }

    fn location(&self, lib: &LibraryId, q: &str) -> R<ferry_index::LocationId> {
        let c = self.libraries.contents().of(lib).map_err(failed)?;
        c.find_location(q)
            .map_err(failed)
            .or_else(|e| parse_loc(q).map_err(|_| e))
    }

    /// A member of a library by name or fingerprint prefix (not this node).
    pub(super) fn member(&self, lib: &LibraryId, who: &str) -> R<MemberInfo> {
        let info = self.libraries.get(lib).map_err(failed)?;
        let q = who.to_lowercase();
        let hits: Vec<_> = info
            .members
            .into_iter()
            .filter(|m| !m.me)
            .filter(|m| m.name.to_lowercase() == q || m.node.matches_prefix(&q))
            .collect();
        the_one(
            hits,
            || format!("no member {who} in \"{}\" (see: ferry members)", info.name),
            "members",
        )
    }

    /// Files a member asked this node to send: `LOCATION/PATH` inside one of this node's own
    /// locations of the member's library (by the index, never by a path it spelled), and no
    /// folder on the way swapped for a link since it was indexed.
    fn member_paths(&self, lib: &LibraryId, paths: &[String]) -> R<Vec<PathBuf>> {
        paths
            .iter()
            .map(|p| {
                let (l, entry) = self.resolve_path(lib, p)?;
                if !l.local {
                    return Err(failed("that is not on this device"));
                }
                let Some(e) = entry else {
                    return Ok(PathBuf::from(&l.path));
                };
                let (_, path) = self
                    .libraries
                    .contents()
                    .entry(lib, &e.id)
                    .map_err(failed)?;
                if crate::library::contents::swapped_for_symlink(&path, &e.path) {
                    return Err(failed("that path is a link now"));
                }
                Ok(path)
            })
            .collect()
    }

    /// A transfer a member may see and steer: one it asked this node to send.
    fn member_transfer(&self, caller: &Caller, id: &str) -> R<TransferInfo> {
        let t = self.transfer(id)?;
        match caller {
            Caller::Local => Ok(t),
            Caller::Member { node, library } => {
                if self.libraries.remote().started(&t.id, node, library) {
                    Ok(t)
                } else {
                    Err(failed(format!("no transfer {id}")))
                }
            }
        }
    }
}

/// Finished transfers a snapshot lists besides the unfinished ones (a front end pages the
/// rest with [`Command::Transfers`]).
const SNAPSHOT_TRANSFERS: usize = 100;
/// Largest page a front end may ask for (a screenful is a few hundred; a list page 500).
const MAX_PAGE: u32 = 2000;
/// Most entries of a folder one answer to a member lists.
const MEMBER_ENTRIES: usize = 10_000;

/// The one hit of a search by name or prefix.
fn the_one<T>(mut hits: Vec<T>, none: impl FnOnce() -> String, what: &str) -> R<T> {
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(failed(none())),
        n => Err(failed(format!(
            "that matches {n} {what}; give more of the id"
        ))),
    }
}

/// Finds the peer a user means, dialing it if it was given by address. Names and prefixes
/// are matched against nearby peers, waiting up to `wait` for discovery to find a match.
pub(crate) async fn resolve(
    p2p: &P2p,
    target: &Target,
    wait: Duration,
) -> Result<PeerId, crate::NodeError> {
    match target {
        Target::Addr { addr, pin } => Ok(p2p.connect(*addr, *pin).await?),
        // A whole fingerprint asked for at once (the app's lists name peers so): that peer,
        // dialled by what the node knows of it, listed or not.
        Target::Query(q) => {
            if let (true, Ok(id)) = (wait.is_zero(), q.parse::<PeerId>()) {
                return Ok(id);
            }
            let deadline = Instant::now() + wait;
            let mut events = p2p.subscribe();
            loop {
                match target::pick(q, &p2p.peers()) {
                    Err(TargetError::NotFound(_)) if Instant::now() < deadline => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let _ = tokio::time::timeout(left, events.recv()).await;
                    }
                    r => return Ok(r?),
                }
            }
        }
    }
}

/// Whom a send goes to: a Ferry peer, or a LocalSend device.
enum To {
    Ferry(PeerId),
    LocalSend(crate::spacedrop::LocalSendDevice),
}

/// A Ferry peer by address, name or fingerprint; failing that, a LocalSend device by alias,
/// certificate fingerprint or address. Both are looked for until `wait` is over.
async fn resolve_send(live: &Live, target: &Target, wait: Duration) -> R<To> {
    let Target::Query(q) = target else {
        return Ok(To::Ferry(
            resolve(&live.p2p, target, wait).await.map_err(failed)?,
        ));
    };
    let deadline = Instant::now() + wait;
    loop {
        match target::pick(q, &live.p2p.peers()) {
            Ok(p) => return Ok(To::Ferry(p)),
            Err(TargetError::NotFound(_)) => {}
            Err(e) => return Err(failed(e)),
        }
        if let Ok(d) = live.spacedrop.find_localsend(q) {
            return Ok(To::LocalSend(d));
        }
        if Instant::now() >= deadline {
            // The Ferry error says what was looked for and how to reach a peer by address.
            return resolve(&live.p2p, target, Duration::ZERO)
                .await
                .map(To::Ferry)
                .map_err(failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reached(v: Vec<(MemberInfo, Result<(), String>)>) -> Vec<Reached> {
    v.into_iter()
        .map(|(member, r)| Reached {
            member,
            error: r.err(),
        })
        .collect()
}

fn tid(t: &TransferInfo) -> R<TransferId> {
    TransferId::parse(&t.id).ok_or_else(|| failed("bad transfer id"))
}

pub(super) async fn run(e: &Engine, caller: Caller, command: Command) -> R<Reply> {
    let libs = &e.libraries;
    Ok(match command {
        Command::Status => Reply::Status { status: e.status() },
        Command::SetName { name } => {
            e.need_live()?.p2p.set_name(&name);
            Reply::Status { status: e.status() }
        }
        Command::Peers => {
            let live = e.need_live()?;
            Reply::Peers {
                peers: live.p2p.peers(),
                localsend: live.spacedrop.localsend_devices(),
            }
        }
        Command::Ping {
            peer,
            count,
            interval_ms,
            wait_ms,
        } => {
            let live = e.need_live()?;
            let target: Target = peer.parse().map_err(failed)?;
            let id = resolve(&live.p2p, &target, ms(wait_ms))
                .await
                .map_err(failed)?;
            let rtts = live
                .p2p
                .ping(&id, count.clamp(1, 100), ms(interval_ms))
                .await
                .map_err(failed)?;
            Reply::Pinged {
                peer: id.fingerprint(),
                name: live.p2p.peer(&id).map(|p| p.name).unwrap_or_default(),
                rtts_ms: rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
            }
        }
        Command::Send {
            peer,
            paths,
            wait_ms,
            pin,
        } => {
            let live = e.need_live()?;
            let paths = match caller {
                Caller::Member { library, .. } => e.member_paths(&library, &paths)?,
                Caller::Local => {
                    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
                    // A missing source is said at once, not after the peer was looked for.
                    for p in &paths {
                        if !p.is_absolute() || !p.exists() {
                            return Err(failed(format!("{}: no such file or folder", p.display())));
                        }
                    }
                    paths
                }
            };
            let target: Target = peer.parse().map_err(failed)?;
            if matches!(caller, Caller::Member { .. }) && matches!(target, Target::Addr { .. }) {
                // A member names a device this node knows; it never makes it dial an address.
                return Err(failed("name a device this node knows, not an address"));
            }
            let (id, to, localsend) = match resolve_send(live, &target, ms(wait_ms)).await? {
                To::Ferry(peer) => {
                    let id = live.spacedrop.send(peer, paths).await.map_err(failed)?;
                    let name = live.p2p.peer(&peer).map(|p| p.name).unwrap_or_default();
                    (id, name, false)
                }
                To::LocalSend(d) => {
                    let id = live
                        .spacedrop
                        .send_localsend(&d.fingerprint, paths, pin)
                        .await
                        .map_err(failed)?;
                    (id, d.alias, true)
                }
            };
            if let Caller::Member { node, library } = caller {
                libs.remote().sent(id.hex(), node, library);
            }
            let transfer = e.transfer(&id.hex())?;
            Reply::Sent {
                transfer,
                to,
                localsend,
            }
        }
        Command::Transfers { limit, before } => {
            let limit = limit.unwrap_or(TRANSFERS_PAGE).clamp(1, MAX_TRANSFERS_PAGE) as usize;
            match caller {
                Caller::Local => {
                    let page = e.transfers_page(before.as_deref(), limit)?;
                    Reply::Transfers {
                        transfers: page.transfers,
                        next: page.next,
                    }
                }
                // A member sees only the transfers it asked for: pages of the node's list are
                // read until one of its own fills the page or the list ends.
                Caller::Member { node, library } => {
                    let mine = |t: &TransferInfo| libs.remote().started(&t.id, &node, &library);
                    let mut transfers = vec![];
                    let mut cursor = match before {
                        Some(b) => Some(e.member_transfer(&caller, &b)?.id),
                        None => None,
                    };
                    let next = loop {
                        let page =
                            e.transfers_page(cursor.as_deref(), MAX_TRANSFERS_PAGE as usize)?;
                        for t in page.transfers {
                            if mine(&t) {
                                transfers.push(t);
                                if transfers.len() == limit {
                                    break;
                                }
                            }
                        }
                        // A full page may be followed by an empty one.
                        if transfers.len() == limit {
                            break transfers.last().map(|t| t.id.clone());
                        }
                        match page.next {
                            Some(n) => cursor = Some(n),
                            None => break None,
                        }
                    };
                    Reply::Transfers { transfers, next }
                }
            }
        }
        Command::Transfer { id } => {
            let t = e.member_transfer(&caller, &id)?;
            let id = tid(&t)?;
            // A member reads a page; this machine's user every file.
            let most = match caller {
                Caller::Local => usize::MAX,
                Caller::Member { .. } => MAX_PAGE as usize,
            };
            let (renamed, failed_files) = match &e.live {
                Some(live) => (
                    live.spacedrop.renamed_files(&id, 0, most).map_err(failed)?,
                    live.spacedrop.failed_files(&id, 0, most).map_err(failed)?,
                ),
                None => {
                    let store = crate::spacedrop::store::Store::open(&e.data_dir.join("ferry.db"))
                        .map_err(failed)?;
                    (
                        crate::spacedrop::renamed_files(&store, &id, 0, usize::MAX)
                            .map_err(failed)?,
                        crate::spacedrop::failed_files(&store, &id, 0, usize::MAX)
                            .map_err(failed)?,
                    )
                }
            };
            Reply::Transfer {
                transfer: t,
                renamed,
                failed: failed_files,
            }
        }
        Command::Pause { ref id } | Command::Resume { ref id } | Command::Cancel { ref id } => {
            let live = e.need_live()?;
            let t = e.member_transfer(&caller, id)?;
            let which = tid(&t)?;
            match command {
                Command::Pause { .. } => live.spacedrop.pause(&which),
                Command::Resume { .. } => live.spacedrop.resume(&which),
                _ => live.spacedrop.cancel(&which),
            }
            .map_err(failed)?;
            Reply::Transfers {
                transfers: vec![e.transfer(&t.id)?],
                next: None,
            }
        }
        Command::Answer { id, accept, dest } => {
            let live = e.need_live()?;
            let prompts = live.spacedrop.prompts();
            let by_prefix = |p: &str| prompts.iter().find(|t| t.hex().starts_with(p)).copied();
            let id = match id.as_deref() {
                Some(p) => by_prefix(&p.to_ascii_lowercase())
                    .ok_or_else(|| failed(format!("no open prompt {p}")))?,
                None => match prompts.as_slice() {
                    [one] => *one,
                    [] => return Err(failed("no open prompt")),
                    _ => {
                        return Err(failed(
                            "several prompts are open; say which: accept ID or reject ID",
                        ))
                    }
                },
            };
            let decision = if accept {
                Decision::Accept {
                    dest: dest.map(PathBuf::from),
                }
            } else {
                Decision::Reject
            };
            live.spacedrop.answer(&id, decision).map_err(failed)?;
            Reply::Done
        }
        Command::Libraries => {
            let mut all = libs.list();
            if let Caller::Member { library, .. } = caller {
                all.retain(|l| l.id == library.hex());
            }
            Reply::Libraries { libraries: all }
        }
        Command::CreateLibrary { name } => Reply::Library {
            library: libs.create(&name).map_err(failed)?,
        },
        Command::RenameLibrary { library, name } => Reply::Library {
            library: libs.rename(&e.lib(&library)?, &name).map_err(failed)?,
        },
        Command::DeleteLibrary { library, wait_ms } => {
            let id = e.lib(&library)?;
            let info = libs.get(&id).map_err(failed)?;
            let reached = if info.removed {
                vec![]
            } else {
                reached(libs.reach(&id, ms(wait_ms), None).await)
            };
            libs.delete(&id, ms(wait_ms)).await.map_err(failed)?;
            Reply::Deleted {
                name: info.name,
                reached,
            }
        }
        Command::Members { library } => Reply::Library {
            library: libs.get(&e.lib(&library)?).map_err(failed)?,
        },
        Command::Pair {
            peer,
            library,
            wait_ms,
        } => {
            let live = e.need_live()?;
            let id = e.lib(&library)?;
            let target: Target = peer.parse().map_err(failed)?;
            let peer = resolve(&live.p2p, &target, ms(wait_ms))
                .await
                .map_err(failed)?;
            Reply::Pairing {
                id: libs.pair(peer, &id).map_err(failed)?,
            }
        }
        Command::AnswerPairing { id, accept } => {
            let waiting: Vec<_> = libs
                .pairings()
                .into_iter()
                .filter(|p| matches!(p.state, PairingState::Confirm { .. }))
                .filter(|p| id.as_deref().is_none_or(|i| p.id.starts_with(i)))
                .collect();
            let p = the_one(
                waiting,
                || "no pairing is waiting for an answer".into(),
                "pairings",
            )?;
            libs.answer_pairing(&p.id, accept).map_err(failed)?;
            Reply::Done
        }
        Command::Unpair {
            node,
            library,
            wait_ms,
        } => {
            let id = e.lib(&library)?;
            let member = e.member(&id, &node)?;
            let info = libs.remove_member(&id, &member.node).map_err(failed)?;
            // (Members connected now hear at once either way; a wait dials the others.)
            let reached = if wait_ms == 0 {
                vec![]
            } else {
                reached(libs.reach(&id, ms(wait_ms), Some(member.node)).await)
            };
            Reply::Unpaired {
                library: info,
                reached,
            }
        }
        Command::Locations { library } => Reply::Locations {
            locations: libs
                .contents()
                .locations(&e.lib(&library)?)
                .map_err(failed)?,
        },
        Command::AddLocation { library, path } => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(failed(format!("{}: give an absolute path", path.display())));
            }
            // The node's own data (its identity key, its databases) is never a location: a
            // member granted `manage` could otherwise read it through the library.
            let data = std::fs::canonicalize(&e.data_dir).unwrap_or_else(|_| e.data_dir.clone());
            let asked = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if data.starts_with(&asked) || asked.starts_with(&data) {
                return Err(failed("this node's own data folder cannot be a location"));
            }
            Reply::Location {
                location: libs
                    .contents()
                    .add_location(&e.lib(&library)?, &path)
                    .map_err(failed)?,
            }
        }
        Command::RescanLocation { library, location } => {
            let lib = e.lib(&library)?;
            let loc = e.location(&lib, &location)?;
            libs.contents().rescan(&lib, &loc).map_err(failed)?;
            Reply::Location {
                location: libs.contents().location(&lib, &loc).map_err(failed)?,
            }
        }
        Command::RenameLocation {
            library,
            location,
            name,
        } => {
            let lib = e.lib(&library)?;
            let loc = e.location(&lib, &location)?;
            Reply::Location {
                location: libs
                    .contents()
                    .rename_location(&lib, &loc, &name)
                    .map_err(failed)?,
            }
        }
        Command::RemoveLocation { library, location } => {
            let lib = e.lib(&library)?;
            let loc = e.location(&lib, &location)?;
            let info = libs.contents().location(&lib, &loc).map_err(failed)?;
            libs.contents()
                .remove_location(&lib, &loc)
                .map_err(failed)?;
            Reply::Location { location: info }
        }
        Command::Entries { library, path } => {
            let lib = e.lib(&library)?;
            let (l, entry) = e.resolve_path(&lib, &path)?;
            let loc = parse_loc(&l.id).map_err(failed)?;
            let mut entries = match entry {
                Some(x) if x.kind != EntryKind::Dir => vec![x],
                Some(x) => libs.contents().list(&lib, &loc, &x.path).map_err(failed)?,
                None => libs.contents().list(&lib, &loc, "").map_err(failed)?,
            };
            // A member's answer stays small (`page` lists the rest a window at a time).
            if matches!(caller, Caller::Member { .. }) {
                entries.truncate(MEMBER_ENTRIES);
            }
            Reply::Entries {
                location: l,
                entries,
            }
        }
        Command::SyncStatus { library } => Reply::SyncStatus {
            members: libs.sync_status(&e.lib(&library)?).map_err(failed)?,
        },
        Command::Get {
            library,
            path,
            dest,
            wait_ms,
        } => {
            e.need_live()?;
            let lib = e.lib(&library)?;
            let (l, entry) = e.resolve_path(&lib, &path)?;
            let Some(entry) = entry else {
                return Err(failed(format!(
                    "name a file or folder inside the location ({}/…)",
                    l.name
                )));
            };
            let loc = parse_loc(&l.id).map_err(failed)?;
            // The owner's connection comes up in the background (members are dialled where
            // they were last seen); another member with the same content serves it too, so
            // only wait a little.
            let started = Instant::now();
            while !l.local
                && libs
                    .contents()
                    .location(&lib, &loc)
                    .map_err(failed)?
                    .owner_online
                    != Some(true)
                && started.elapsed() < ms(wait_ms)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Reply::Download {
                download: libs
                    .save(&lib, &entry.id, PathBuf::from(dest))
                    .await
                    .map_err(failed)?,
            }
        }
        Command::Grant {
            library,
            node,
            capability,
        } => {
            let lib = e.lib(&library)?;
            let member = e.member(&lib, &node)?;
            if !super::Capability::GRANTABLE.contains(&capability) {
                return Err(failed(format!("\"{capability}\" cannot be granted")));
            }
            let db = libs.db_of(&lib).ok_or_else(|| failed("no such library"))?;
            db.grant(&member.node, capability.as_str(), ferry_util::unix_now())
                .map_err(failed)?;
            tracing::info!(member = %member.node.short(), %capability, "granted");
            grants(e, &lib)?
        }
        Command::Revoke {
            library,
            node,
            capability,
        } => {
            let lib = e.lib(&library)?;
            let member = e.member(&lib, &node)?;
            let db = libs.db_of(&lib).ok_or_else(|| failed("no such library"))?;
            db.revoke(&member.node, capability.as_str())
                .map_err(failed)?;
            tracing::info!(member = %member.node.short(), %capability, "revoked");
            grants(e, &lib)?
        }
        Command::Grants { library } => grants(e, &e.lib(&library)?)?,
        Command::Snapshot => {
            let live = e.need_live()?;
            let recent = live.spacedrop.recent_transfers(SNAPSHOT_TRANSFERS);
            let contents = libs.contents();
            let libraries = libs.list();
            let locations = libraries
                .iter()
                .filter_map(|l| {
                    let id = LibraryId::parse(&l.id)?;
                    Some(LibraryLocations {
                        library: l.id.clone(),
                        locations: contents.locations(&id).ok()?,
                    })
                })
                .collect();
            Reply::Snapshot {
                snapshot: Box::new(NodeSnapshot {
                    status: e.status(),
                    peers: live.p2p.peers(),
                    transfers: recent.transfers,
                    transfers_next: recent.next,
                    prompts: live.spacedrop.open_prompts(),
                    libraries,
                    locations,
                    pairings: libs.pairings(),
                    localsend: live.spacedrop.localsend_devices(),
                    downloads: libs.downloads(),
                    dest: live.spacedrop.config().dest.display().to_string(),
                }),
            }
        }
        Command::Connect { address } => {
            let live = e.need_live()?;
            let Target::Addr { addr, pin } = address.trim().parse::<Target>().map_err(failed)?
            else {
                return Err(failed("enter an address like 192.168.1.20:7787"));
            };
            let id = live.p2p.connect(addr, pin).await.map_err(failed)?;
            live.p2p.add_manual_peer(addr, Some(id));
            Reply::Peer {
                peer: live
                    .p2p
                    .peer(&id)
                    .ok_or_else(|| failed("connected, then lost the peer"))?,
            }
        }
        Command::ResendWithPin { id, pin } => {
            let live = e.need_live()?;
            let t = e.transfer(&id)?;
            let id = live
                .spacedrop
                .resend_localsend(&tid(&t)?, Some(pin))
                .await
                .map_err(failed)?;
            Reply::Sent {
                to: t.peer_name,
                transfer: e.transfer(&id.hex())?,
                localsend: true,
            }
        }
        Command::TransferFiles { id, offset, limit } => {
            let live = e.need_live()?;
            let t = e.member_transfer(&caller, &id)?;
            let id = tid(&t)?;
            let (offset, limit) = (offset as usize, limit.min(MAX_PAGE) as usize);
            Reply::Transfer {
                transfer: t,
                renamed: live
                    .spacedrop
                    .renamed_files(&id, offset, limit)
                    .map_err(failed)?,
                failed: live
                    .spacedrop
                    .failed_files(&id, offset, limit)
                    .map_err(failed)?,
            }
        }
        Command::Page {
            library,
            location,
            dir,
            offset,
            limit,
        } => {
            let lib = e.lib(&library)?;
            let loc = parse_loc(&location).map_err(failed)?;
            Reply::Page {
                page: libs
                    .contents()
                    .page(&lib, &loc, &dir, offset, limit.min(MAX_PAGE))
                    .map_err(failed)?,
            }
        }
        Command::Entry { library, entry } => {
            let (entry, path) = libs
                .contents()
                .entry(&e.lib(&library)?, &entry)
                .map_err(failed)?;
            Reply::Entry {
                entry,
                path: path.display().to_string(),
            }
        }
        Command::SetLocationPreviews {
            library,
            location,
            on,
        } => {
            let lib = e.lib(&library)?;
            let loc = parse_loc(&location).map_err(failed)?;
            Reply::Location {
                location: libs.set_location_previews(&lib, &loc, on).map_err(failed)?,
            }
        }
        Command::SaveEntry { library, entry } => {
            let dest = e.need_live()?.spacedrop.config().dest;
            Reply::Download {
                download: libs
                    .save(&e.lib(&library)?, &entry, dest)
                    .await
                    .map_err(failed)?,
            }
        }
        Command::PauseDownload { id } => {
            libs.pause_download(&id).map_err(failed)?;
            Reply::Done
        }
        Command::ResumeDownload { id } => {
            libs.resume_download(&id).map_err(failed)?;
            Reply::Done
        }
        Command::CancelDownload { id } => {
            libs.cancel_download(&id).await.map_err(failed)?;
            Reply::Done
        }
        Command::Media { path, range, head } => {
            let r = libs.serve_media(&path, range.as_deref(), head).await;
            Reply::Media {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                body: Bytes(r.body),
            }
        }
        Command::Configure {
            name,
            dest,
            preview_sync,
            preview_cap_mib,
            history_days,
            history_count,
        } => {
            let live = e.need_live()?;
            if history_days.is_some() || history_count.is_some() {
                let h = live.spacedrop.history();
                live.spacedrop.set_history(crate::History {
                    days: history_days.unwrap_or(h.days),
                    count: history_count.unwrap_or(h.count),
                });
            }
            if let Some(name) = name {
                live.p2p.set_name(&name);
            }
            if let Some(dest) = dest {
                live.spacedrop.set_config(crate::SpacedropConfig {
                    dest: PathBuf::from(dest),
                    ..live.spacedrop.config()
                });
            }
            let mut previews = libs.previews();
            previews.sync = preview_sync.unwrap_or(previews.sync);
            previews.cap = preview_cap_mib.map_or(previews.cap, |m| u64::from(m) << 20);
            libs.set_previews(previews);
            Reply::Status { status: e.status() }
        }
        Command::Remote {
            node,
            library,
            command,
        } => {
            e.need_live()?;
            super::remote::call_member(e, &node, library.as_deref(), *command).await?
        }
    })
}

/// Who holds which grant in a library here, and the newest commands members ran here.
fn grants(e: &Engine, lib: &LibraryId) -> R<Reply> {
    let db = e
        .libraries
        .db_of(lib)
        .ok_or_else(|| failed("no such library"))?;
    let info = e.libraries.get(lib).map_err(failed)?;
    let name_of = |p: &PeerId| {
        info.members
            .iter()
            .find(|m| m.node == *p)
            .map(|m| m.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| p.short())
    };
    let grants = db
        .grants()
        .map_err(failed)?
        .into_iter()
        .filter_map(|g| {
            Some(GrantInfo {
                name: name_of(&g.node),
                node: g.node.fingerprint(),
                capability: super::Capability::parse_grantable(&g.capability)?,
                granted: g.granted,
            })
        })
        .collect();
    let log = db
        .remote_log(50)
        .map_err(failed)?
        .into_iter()
        .map(|r| RemoteAction {
            at: r.at,
            name: name_of(&r.node),
            node: r.node.fingerprint(),
            command: r.command,
            outcome: r.outcome,
        })
        .collect();
    Ok(Reply::Grants { grants, log })
}
