//! The commands the UI calls. Each is a thin wrapper over the node; errors reach the UI as
//! readable strings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::index::{EntryInfo, LocationId, LocationInfo, Page};
use ferry_core::library::contents::parse_loc;
use ferry_core::library::media::downloads::DownloadInfo;
use ferry_core::library::wire::LibraryId;
use ferry_core::library::LibraryContents;
use ferry_core::spacedrop::wire::TransferId;
use ferry_core::spacedrop::{FailedFile, Prompt, Renamed};
use ferry_core::{
    Decision, LibraryError, LibraryInfo, Node, PairingInfo, PeerId, PeerSnapshot, SpacedropConfig,
    Target, TransferInfo,
};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, State};
use tauri_plugin_dialog::DialogExt;

use crate::settings::Settings;
use crate::AppState;

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

async fn node(state: &State<'_, AppState>) -> Arc<Node> {
    state.node.read().await.clone()
}

fn transfer_id(id: &str) -> Res<TransferId> {
    TransferId::parse(id).ok_or_else(|| format!("not a transfer id: {id}"))
}

fn peer_id(id: &str) -> Res<PeerId> {
    id.parse().map_err(err)
}

fn library_id(id: &str) -> Res<LibraryId> {
    LibraryId::parse(id).ok_or_else(|| format!("not a library id: {id}"))
}

/// Who this node is.
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type)]
pub struct Me {
    pub id: String,
    pub short_id: String,
    pub name: String,
    pub listen: String,
    pub discovery: bool,
}

/// Everything the UI shows, at once (later changes arrive as events).
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct Snapshot {
    pub me: Me,
    pub peers: Vec<PeerSnapshot>,
    pub transfers: Vec<TransferInfo>,
    pub prompts: Vec<Prompt>,
    pub libraries: Vec<LibraryInfo>,
    pub locations: Vec<LibraryLocations>,
    pub pairings: Vec<PairingInfo>,
    pub localsend_devices: Vec<ferry_core::spacedrop::LocalSendDevice>,
    /// Downloads of members' files (*Save to this device*) since the node started.
    pub downloads: Vec<DownloadInfo>,
    pub settings: Settings,
}

#[tauri::command]
#[specta::specta]
pub async fn snapshot(state: State<'_, AppState>) -> Res<Snapshot> {
    let node = node(&state).await;
    let settings = state.settings.lock().map_err(err)?.clone();
    Ok(Snapshot {
        me: Me {
            id: node.id().fingerprint(),
            short_id: node.id().short(),
            name: node.name(),
            listen: node.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            discovery: settings.discovery && std::env::var_os("FERRY_NO_DISCOVERY").is_none(),
        },
        peers: node.peers(),
        transfers: node.spacedrop().transfers(),
        prompts: node.spacedrop().open_prompts(),
        libraries: node.libraries().list(),
        locations: all_locations(&node),
        pairings: node.libraries().pairings(),
        localsend_devices: node.spacedrop().localsend_devices(),
        downloads: node.libraries().downloads(),
        settings,
    })
}

/// Runs a command of the node's one command surface (the CLI's, over its socket): here the
/// grants this device gives members, and commands run on members (`remote`), under theirs.
#[tauri::command]
#[specta::specta]
pub async fn control(
    state: State<'_, AppState>,
    command: ferry_core::control::Command,
) -> Res<ferry_core::control::Reply> {
    node(&state).await.execute(command).await.map_err(err)
}

/// Sends files and folders (paths from a drop or a picker) to a peer; returns the transfer id.
/// `peer` is a Ferry peer's id, or a LocalSend device's certificate fingerprint (64 hex
/// digits, which no Ferry id is).
#[tauri::command]
#[specta::specta]
pub async fn send_paths(
    state: State<'_, AppState>,
    peer: String,
    paths: Vec<String>,
) -> Res<String> {
    let node = node(&state).await;
    let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
    let sent = match peer.parse::<PeerId>() {
        Ok(id) => node.spacedrop().send(id, paths).await,
        Err(_) => node.spacedrop().send_localsend(&peer, paths, None).await,
    };
    Ok(sent.map_err(err)?.hex())
}

/// Sends again what a LocalSend send offered, with the PIN its receiver asked for; returns
/// the new transfer's id.
#[tauri::command]
#[specta::specta]
pub async fn resend_with_pin(state: State<'_, AppState>, id: String, pin: String) -> Res<String> {
    let node = node(&state).await;
    let sent = node
        .spacedrop()
        .resend_localsend(&transfer_id(&id)?, Some(pin))
        .await;
    Ok(sent.map_err(err)?.hex())
}

/// Opens the system file (or folder) picker and sends what was chosen. `None` if cancelled.
#[tauri::command]
#[specta::specta]
pub async fn pick_and_send(
    app: AppHandle,
    state: State<'_, AppState>,
    peer: String,
    folders: bool,
) -> Res<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dialog = app.dialog().file().set_title(if folders {
        "Send folders"
    } else {
        "Send files"
    });
    let done = move |picked: Option<Vec<tauri_plugin_dialog::FilePath>>| {
        let _ = tx.send(picked.unwrap_or_default());
    };
    if folders {
        dialog.pick_folders(done);
    } else {
        dialog.pick_files(done);
    }
    let picked: Vec<String> = rx
        .await
        .map_err(err)?
        .into_iter()
        .filter_map(|p| p.into_path().ok())
        .map(|p| p.display().to_string())
        .collect();
    if picked.is_empty() {
        return Ok(None);
    }
    send_paths(state, peer, picked).await.map(Some)
}

/// Answers a prompt; with `choose_folder`, asks where to save first. The first answer from any
/// window wins; the others learn it from the `prompt_resolved` event.
#[tauri::command]
#[specta::specta]
pub async fn answer_prompt(
    app: AppHandle,
    state: State<'_, AppState>,
    transfer: String,
    accept: bool,
    choose_folder: bool,
) -> Res<()> {
    let id = transfer_id(&transfer)?;
    let decision = if !accept {
        Decision::Reject
    } else if choose_folder {
        match pick_folder(app).await? {
            Some(dir) => Decision::Accept {
                dest: Some(PathBuf::from(dir)),
            },
            None => return Ok(()),
        }
    } else {
        Decision::Accept { dest: None }
    };
    node(&state)
        .await
        .spacedrop()
        .answer(&id, decision)
        .map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn pause_transfer(state: State<'_, AppState>, id: String) -> Res<()> {
    node(&state)
        .await
        .spacedrop()
        .pause(&transfer_id(&id)?)
        .map_err(err)
}

/// Renamed files `offset..offset + limit` of a transfer: its events list only the first ones.
#[tauri::command]
#[specta::specta]
pub async fn renamed_files(
    state: State<'_, AppState>,
    id: String,
    offset: u32,
    limit: u32,
) -> Res<Vec<Renamed>> {
    let (id, limit) = (transfer_id(&id)?, limit.min(MAX_PAGE) as usize);
    // Off the async threads: a large reception's layout is megabytes of JSON.
    off_thread(&state, move |n| {
        n.spacedrop().renamed_files(&id, offset as usize, limit)
    })
    .await
}

/// Failed files `offset..offset + limit` of a transfer: its events list only the first ones.
#[tauri::command]
#[specta::specta]
pub async fn failed_files(
    state: State<'_, AppState>,
    id: String,
    offset: u32,
    limit: u32,
) -> Res<Vec<FailedFile>> {
    let (id, limit) = (transfer_id(&id)?, limit.min(MAX_PAGE) as usize);
    off_thread(&state, move |n| {
        n.spacedrop().failed_files(&id, offset as usize, limit)
    })
    .await
}

#[tauri::command]
#[specta::specta]
pub async fn resume_transfer(state: State<'_, AppState>, id: String) -> Res<()> {
    node(&state)
        .await
        .spacedrop()
        .resume(&transfer_id(&id)?)
        .map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_transfer(state: State<'_, AppState>, id: String) -> Res<()> {
    node(&state)
        .await
        .spacedrop()
        .cancel(&transfer_id(&id)?)
        .map_err(err)
}

/// Connects to a peer by `host:port` (or `FINGERPRINT@host:port`) and keeps it connected.
#[tauri::command]
#[specta::specta]
pub async fn connect_address(state: State<'_, AppState>, address: String) -> Res<PeerSnapshot> {
    let node = node(&state).await;
    let Target::Addr { addr, pin } = address.trim().parse::<Target>().map_err(err)? else {
        return Err("enter an address like 192.168.1.20:7787".into());
    };
    let id = node.p2p().connect(addr, pin).await.map_err(err)?;
    node.p2p().add_manual_peer(addr, Some(id));
    node.p2p()
        .peer(&id)
        .ok_or_else(|| "connected, then lost the peer".into())
}

/// Shows a received file or folder in the system file manager.
#[tauri::command]
#[specta::specta]
pub fn show_in_folder(app: AppHandle, path: String) -> Res<()> {
    use tauri_plugin_opener::OpenerExt;
    app.opener().reveal_item_in_dir(path).map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn pick_folder(app: AppHandle) -> Res<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title("Choose a folder")
        .pick_folder(move |p| {
            let _ = tx.send(p);
        });
    Ok(rx
        .await
        .map_err(err)?
        .and_then(|p| p.into_path().ok())
        .map(|p| p.display().to_string()))
}

/// Saves settings. A new name or folder applies at once; discovery changes restart the node
/// (peers see it leave and come back).
#[tauri::command]
#[specta::specta]
pub async fn save_settings(
    app: AppHandle,
    state: State<'_, AppState>,
    settings: Settings,
) -> Res<Settings> {
    let old = state.settings.lock().map_err(err)?.clone();
    settings.save(&state.data_dir).map_err(err)?;
    *state.settings.lock().map_err(err)? = settings.clone();
    let node = node(&state).await;
    if settings.discovery != old.discovery
        || settings.interfaces != old.interfaces
        || settings.localsend != old.localsend
        || settings.localsend_pin != old.localsend_pin
    {
        let cfg = settings.node_config(&state.data_dir)?;
        let mut slot = state.node.write().await;
        slot.shutdown().await;
        // The old node must be gone (its data-dir lock released) before the new one starts.
        let old_node =
            std::mem::replace(&mut *slot, Arc::new(Node::start(cfg).await.map_err(err)?));
        drop(old_node);
        crate::bridge::forward(app, &slot);
        return Ok(settings);
    }
    let name = if settings.name.trim().is_empty() {
        gethostname::gethostname().to_string_lossy().into_owned()
    } else {
        settings.name.clone()
    };
    node.set_name(&name);
    node.libraries()
        .set_previews(settings.node_config(&state.data_dir)?.previews);
    node.spacedrop().set_config(SpacedropConfig {
        dest: PathBuf::from(&settings.download_dir),
        ..node.spacedrop().config()
    });
    Ok(settings)
}

/// Opens another window on the same node (every window shows every prompt).
#[tauri::command]
#[specta::specta]
pub fn open_window(app: AppHandle) -> Res<()> {
    let label = format!("main-{}", ferry_util::since_epoch().as_millis());
    tauri::WebviewWindowBuilder::new(&app, label, tauri::WebviewUrl::App("index.html".into()))
        .title("Ferry")
        .inner_size(1000.0, 720.0)
        .min_inner_size(720.0, 520.0)
        .build()
        .map(|_| ())
        .map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn create_library(state: State<'_, AppState>, name: String) -> Res<LibraryInfo> {
    node(&state).await.libraries().create(&name).map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn rename_library(
    state: State<'_, AppState>,
    library: String,
    name: String,
) -> Res<LibraryInfo> {
    node(&state)
        .await
        .libraries()
        .rename(&library_id(&library)?, &name)
        .map_err(err)
}

/// Leaves a library (members online now are told) and deletes it on this device.
#[tauri::command]
#[specta::specta]
pub async fn delete_library(state: State<'_, AppState>, library: String) -> Res<()> {
    node(&state)
        .await
        .libraries()
        .delete(&library_id(&library)?, std::time::Duration::from_secs(3))
        .await
        .map_err(err)
}

/// Removes a member: every member refuses it once it hears (online ones at once).
#[tauri::command]
#[specta::specta]
pub async fn remove_member(
    state: State<'_, AppState>,
    library: String,
    node_id: String,
) -> Res<LibraryInfo> {
    node(&state)
        .await
        .libraries()
        .remove_member(&library_id(&library)?, &peer_id(&node_id)?)
        .map_err(err)
}

/// Asks a peer to join a library; the code and outcome arrive as `pairing` events.
#[tauri::command]
#[specta::specta]
pub async fn pair_peer(state: State<'_, AppState>, peer: String, library: String) -> Res<String> {
    node(&state)
        .await
        .libraries()
        .pair(peer_id(&peer)?, &library_id(&library)?)
        .map_err(err)
}

/// This user's verdict on a pairing code (either side). The first answer from any window wins.
#[tauri::command]
#[specta::specta]
pub async fn answer_pairing(state: State<'_, AppState>, pairing: String, accept: bool) -> Res<()> {
    node(&state)
        .await
        .libraries()
        .answer_pairing(&pairing, accept)
        .map_err(err)
}

// Library contents. Each call is a short SQLite read or write on the library's own
// connection (reads never wait for the indexer), run off the async runtime.

async fn contents<T: Send + 'static>(
    state: &State<'_, AppState>,
    f: impl FnOnce(&LibraryContents) -> Result<T, LibraryError> + Send + 'static,
) -> Res<T> {
    off_thread(state, move |n| f(n.libraries().contents())).await
}

/// Runs `f` (disk and database work) on a blocking thread, off the async ones.
async fn off_thread<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    state: &State<'_, AppState>,
    f: impl FnOnce(&Node) -> Result<T, E> + Send + 'static,
) -> Res<T> {
    let node = node(state).await;
    tauri::async_runtime::spawn_blocking(move || f(&node))
        .await
        .map_err(err)?
        .map_err(err)
}

fn location_id(id: &str) -> Res<LocationId> {
    parse_loc(id).map_err(err)
}

/// A library's locations (what the snapshot holds, per library).
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct LibraryLocations {
    pub library: String,
    pub locations: Vec<LocationInfo>,
}

fn all_locations(node: &Node) -> Vec<LibraryLocations> {
    let contents = node.libraries().contents();
    node.libraries()
        .list()
        .into_iter()
        .filter_map(|lib| {
            let id = LibraryId::parse(&lib.id)?;
            Some(LibraryLocations {
                library: lib.id,
                locations: contents.locations(&id).ok()?,
            })
        })
        .collect()
}

/// Adds a folder (chosen with `pick_folder`) to a library; it is indexed and watched at once.
#[tauri::command]
#[specta::specta]
pub async fn add_location(
    state: State<'_, AppState>,
    library: String,
    path: String,
) -> Res<LocationInfo> {
    let lib = library_id(&library)?;
    contents(&state, move |c| c.add_location(&lib, Path::new(&path))).await
}

/// Removes a location from a library; the folder itself is untouched.
#[tauri::command]
#[specta::specta]
pub async fn remove_location(
    state: State<'_, AppState>,
    library: String,
    location: String,
) -> Res<()> {
    let (lib, loc) = (library_id(&library)?, location_id(&location)?);
    contents(&state, move |c| c.remove_location(&lib, &loc)).await
}

#[tauri::command]
#[specta::specta]
pub async fn rescan_location(
    state: State<'_, AppState>,
    library: String,
    location: String,
) -> Res<()> {
    let (lib, loc) = (library_id(&library)?, location_id(&location)?);
    contents(&state, move |c| c.rescan(&lib, &loc)).await
}

/// Whether a member's location has its thumbnails copied to this device.
#[tauri::command]
#[specta::specta]
pub async fn set_location_previews(
    state: State<'_, AppState>,
    library: String,
    location: String,
    on: bool,
) -> Res<LocationInfo> {
    let (lib, loc) = (library_id(&library)?, location_id(&location)?);
    off_thread(&state, move |n| {
        n.libraries().set_location_previews(&lib, &loc, on)
    })
    .await
}

/// Largest page the UI may ask for (a screenful is a few hundred; a list page 500).
const MAX_PAGE: u32 = 2000;

/// Entries `offset..offset + limit` of folder `dir` (`""` for the top) of a location, folders
/// first, then by name; with the folder's total, for a virtualised grid.
#[tauri::command]
#[specta::specta]
pub async fn list_entries(
    state: State<'_, AppState>,
    library: String,
    location: String,
    dir: String,
    offset: u32,
    limit: u32,
) -> Res<Page> {
    let (lib, loc) = (library_id(&library)?, location_id(&location)?);
    contents(&state, move |c| {
        c.page(&lib, &loc, &dir, offset, limit.min(MAX_PAGE))
    })
    .await
}

/// One entry and where it is on this device.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct EntryDetails {
    pub entry: EntryInfo,
    pub path: String,
}

#[tauri::command]
#[specta::specta]
pub async fn entry_details(
    state: State<'_, AppState>,
    library: String,
    entry: String,
) -> Res<EntryDetails> {
    let lib = library_id(&library)?;
    let (entry, path) = contents(&state, move |c| c.entry(&lib, &entry)).await?;
    Ok(EntryDetails {
        entry,
        path: path.display().to_string(),
    })
}

/// *Save to this device*: starts copying an entry (a file, or a folder and everything in it)
/// of any member into the download folder, verified end to end; the transfer list follows it
/// through `download` events. By id: the page never names a path.
#[tauri::command]
#[specta::specta]
pub async fn save_entry(
    state: State<'_, AppState>,
    library: String,
    entry: String,
) -> Res<DownloadInfo> {
    let lib = library_id(&library)?;
    let node = node(&state).await;
    let dest = node.spacedrop().config().dest;
    node.libraries().save(&lib, &entry, dest).await.map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn pause_download(state: State<'_, AppState>, id: String) -> Res<()> {
    node(&state)
        .await
        .libraries()
        .pause_download(&id)
        .map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn resume_download(state: State<'_, AppState>, id: String) -> Res<()> {
    node(&state)
        .await
        .libraries()
        .resume_download(&id)
        .map_err(err)
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_download(state: State<'_, AppState>, id: String) -> Res<()> {
    node(&state)
        .await
        .libraries()
        .cancel_download(&id)
        .await
        .map_err(err)
}

/// Where `<video>` and `<audio>` read an entry's bytes from, if not from `ferry://`:
/// `http://127.0.0.1:PORT/TOKEN` on Linux (see `media_http`); `None` elsewhere.
#[tauri::command]
#[specta::specta]
pub async fn media_base(state: State<'_, AppState>) -> Res<Option<String>> {
    Ok(state.media_base.clone())
}

/// What `open_entry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum Opened {
    /// Opened (or shown in its folder).
    Done,
    /// Not opened: opening it would run it. Ask the user, then call again with `run_program`.
    IsProgram,
}

/// Opens an entry with the system's default app (`reveal`: shows it in its folder instead).
/// By id: the page never names a path to open. A file that opening would run (a program, a
/// script, an installer: it may have come from a peer) is opened only with `run_program`.
#[tauri::command]
#[specta::specta]
pub async fn open_entry(
    app: AppHandle,
    state: State<'_, AppState>,
    library: String,
    entry: String,
    reveal: bool,
    run_program: bool,
) -> Res<Opened> {
    use tauri_plugin_opener::OpenerExt;
    let lib = library_id(&library)?;
    // Looked at on the blocking thread that finds the entry (it may read the file's start).
    let (path, program) = contents(&state, move |c| {
        let (_, path) = c.entry(&lib, &entry)?;
        let program = !reveal && ferry_core::index::program::runs_when_opened(&path);
        Ok((path, program))
    })
    .await?;
    if reveal {
        app.opener().reveal_item_in_dir(path).map_err(err)?;
        return Ok(Opened::Done);
    }
    if program && !run_program {
        return Ok(Opened::IsProgram);
    }
    app.opener()
        .open_path(path.display().to_string(), None::<&str>)
        .map_err(err)?;
    Ok(Opened::Done)
}
