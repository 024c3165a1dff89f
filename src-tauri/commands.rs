//! The commands the UI calls. Each is a thin wrapper over one command of the node's command
//! surface (`ferry_core::control`), so the app works the same on a node of its own and on one
//! it attached to; errors reach the UI as readable strings.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::control::command::LibraryLocations;
use ferry_core::control::{Command, Reply};
use ferry_core::index::{EntryInfo, LocationInfo, Page};
use ferry_core::library::media::downloads::DownloadInfo;
use ferry_core::spacedrop::{FailedFile, Prompt, Renamed};
use ferry_core::{LibraryInfo, Node, PairingInfo, PeerSnapshot, TransferInfo};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, State};
use tauri_plugin_dialog::DialogExt;

use crate::backend::{expect_reply, Backend};
use crate::settings::Settings;
use crate::AppState;

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

pub(crate) async fn backend(state: &State<'_, AppState>) -> Backend {
    state.backend.read().await.clone()
}

/// Runs one command on the node.
async fn run(state: &State<'_, AppState>, command: Command) -> Res<Reply> {
    backend(state).await.run(command).await
}

/// Runs a command whose only answer is "done".
async fn done(state: &State<'_, AppState>, command: Command) -> Res<()> {
    run(state, command).await.map(|_| ())
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
    /// This app is a front end of a node started elsewhere (`ferry node`): its settings are
    /// that node's, not this window's.
    pub attached: bool,
    pub peers: Vec<PeerSnapshot>,
    /// Every unfinished transfer and the newest others (the node's snapshot's).
    pub transfers: Vec<TransferInfo>,
    /// More finished transfers follow: the `before` of the `transfers` command for them.
    pub transfers_next: Option<String>,
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
    let b = backend(&state).await;
    let snap =
        expect_reply!(b.run(Command::Snapshot).await?, Reply::Snapshot { snapshot } => snapshot)?;
    let settings = state.settings.lock().map_err(err)?.clone();
    let s = snap.status;
    Ok(Snapshot {
        me: Me {
            id: s.id,
            short_id: s.short_id,
            name: s.name,
            listen: s.listen,
            discovery: s.discovery,
        },
        attached: b.own().is_none(),
        peers: snap.peers,
        transfers: snap.transfers,
        transfers_next: snap.transfers_next,
        prompts: snap.prompts,
        libraries: snap.libraries,
        locations: snap.locations,
        pairings: snap.pairings,
        localsend_devices: snap.localsend,
        downloads: snap.downloads,
        settings,
    })
}

/// Runs a command of the node's one command surface (the CLI's, over its socket): here the
/// grants this device gives members, and commands run on members (`remote`), under theirs.
#[tauri::command]
#[specta::specta]
pub async fn control(state: State<'_, AppState>, command: Command) -> Res<Reply> {
    run(&state, command).await
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
    let send = Command::Send {
        peer,
        paths,
        wait_ms: 0,
        pin: None,
    };
    expect_reply!(run(&state, send).await?, Reply::Sent { transfer, .. } => transfer.id)
}

/// Sends again what a LocalSend send offered, with the PIN its receiver asked for; returns
/// the new transfer's id.
#[tauri::command]
#[specta::specta]
pub async fn resend_with_pin(state: State<'_, AppState>, id: String, pin: String) -> Res<String> {
    let resend = Command::ResendWithPin { id, pin };
    expect_reply!(run(&state, resend).await?, Reply::Sent { transfer, .. } => transfer.id)
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
    let dest = if accept && choose_folder {
        match pick_folder(app).await? {
            Some(dir) => Some(dir),
            None => return Ok(()),
        }
    } else {
        None
    };
    let answer = Command::Answer {
        id: Some(transfer),
        accept,
        dest,
    };
    done(&state, answer).await
}

#[tauri::command]
#[specta::specta]
pub async fn pause_transfer(state: State<'_, AppState>, id: String) -> Res<()> {
    done(&state, Command::Pause { id }).await
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
    let files = Command::TransferFiles { id, offset, limit };
    expect_reply!(run(&state, files).await?, Reply::Transfer { renamed, .. } => renamed)
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
    let files = Command::TransferFiles { id, offset, limit };
    expect_reply!(run(&state, files).await?, Reply::Transfer { failed, .. } => failed)
}

#[tauri::command]
#[specta::specta]
pub async fn resume_transfer(state: State<'_, AppState>, id: String) -> Res<()> {
    done(&state, Command::Resume { id }).await
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_transfer(state: State<'_, AppState>, id: String) -> Res<()> {
    done(&state, Command::Cancel { id }).await
}

/// Connects to a peer by `host:port` (or `FINGERPRINT@host:port`) and keeps it connected.
#[tauri::command]
#[specta::specta]
pub async fn connect_address(state: State<'_, AppState>, address: String) -> Res<PeerSnapshot> {
    expect_reply!(run(&state, Command::Connect { address }).await?, Reply::Peer { peer } => peer)
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
    let b = backend(&state).await;
    let Some(node) = b.own().cloned() else {
        return Err(
            "this app is attached to a Ferry node started elsewhere (ferry node): \
                    its settings are that node's"
                .into(),
        );
    };
    let old = state.settings.lock().map_err(err)?.clone();
    settings.save(&state.data_dir).map_err(err)?;
    *state.settings.lock().map_err(err)? = settings.clone();
    if settings.discovery != old.discovery
        || settings.interfaces != old.interfaces
        || settings.localsend != old.localsend
        || settings.localsend_pin != old.localsend_pin
    {
        let cfg = settings.node_config(&state.data_dir)?;
        let mut slot = state.backend.write().await;
        node.shutdown().await;
        drop((node, b));
        drop(std::mem::replace(&mut *slot, Backend::Restarting));
        // The old node must be gone (its data-dir lock released) before the new one starts; a
        // command still running on it holds it a moment longer.
        let mut tries = 0;
        let node = loop {
            match Node::start(cfg.clone()).await {
                Err(ferry_core::NodeError::Locked(_)) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                r => break r.map_err(err)?,
            }
        };
        *slot = Backend::Own(Arc::new(node));
        crate::bridge::forward(app, &slot);
        return Ok(settings);
    }
    let name = if settings.name.trim().is_empty() {
        gethostname::gethostname().to_string_lossy().into_owned()
    } else {
        settings.name.clone()
    };
    let configure = Command::Configure {
        name: Some(name),
        dest: Some(settings.download_dir.clone()),
        preview_sync: Some(settings.preview_sync),
        preview_cap_mib: Some(settings.preview_cap_mib),
        history_days: Some(settings.history_days),
        history_count: Some(settings.history_count),
    };
    b.run(configure).await?;
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
    library_reply(run(&state, Command::CreateLibrary { name }).await?)
}

fn library_reply(r: Reply) -> Res<LibraryInfo> {
    expect_reply!(r, Reply::Library { library } | Reply::Unpaired { library, .. } => library)
}

#[tauri::command]
#[specta::specta]
pub async fn rename_library(
    state: State<'_, AppState>,
    library: String,
    name: String,
) -> Res<LibraryInfo> {
    library_reply(run(&state, Command::RenameLibrary { library, name }).await?)
}

/// Leaves a library (members online now are told) and deletes it on this device.
#[tauri::command]
#[specta::specta]
pub async fn delete_library(state: State<'_, AppState>, library: String) -> Res<()> {
    let delete = Command::DeleteLibrary {
        library,
        wait_ms: 3000,
    };
    done(&state, delete).await
}

/// Removes a member: every member refuses it once it hears (online ones at once).
#[tauri::command]
#[specta::specta]
pub async fn remove_member(
    state: State<'_, AppState>,
    library: String,
    node_id: String,
) -> Res<LibraryInfo> {
    // Members online now hear at once (the node pushes the change); nobody is waited for.
    let unpair = Command::Unpair {
        node: node_id,
        library,
        wait_ms: 0,
    };
    library_reply(run(&state, unpair).await?)
}

/// Asks a peer to join a library; the code and outcome arrive as `pairing` events.
#[tauri::command]
#[specta::specta]
pub async fn pair_peer(state: State<'_, AppState>, peer: String, library: String) -> Res<String> {
    let pair = Command::Pair {
        peer,
        library,
        wait_ms: 0,
    };
    expect_reply!(run(&state, pair).await?, Reply::Pairing { id } => id)
}

/// This user's verdict on a pairing code (either side). The first answer from any window wins.
#[tauri::command]
#[specta::specta]
pub async fn answer_pairing(state: State<'_, AppState>, pairing: String, accept: bool) -> Res<()> {
    let answer = Command::AnswerPairing {
        id: Some(pairing),
        accept,
    };
    done(&state, answer).await
}

// Library contents: each a short SQLite read or write on the library's own connection
// (reads never wait for the indexer), run by the node off its async threads.

fn location_reply(r: Reply) -> Res<LocationInfo> {
    expect_reply!(r, Reply::Location { location } => location)
}

/// Adds a folder (chosen with `pick_folder`) to a library; it is indexed and watched at once.
#[tauri::command]
#[specta::specta]
pub async fn add_location(
    state: State<'_, AppState>,
    library: String,
    path: String,
) -> Res<LocationInfo> {
    location_reply(run(&state, Command::AddLocation { library, path }).await?)
}

/// Removes a location from a library; the folder itself is untouched.
#[tauri::command]
#[specta::specta]
pub async fn remove_location(
    state: State<'_, AppState>,
    library: String,
    location: String,
) -> Res<()> {
    done(&state, Command::RemoveLocation { library, location }).await
}

#[tauri::command]
#[specta::specta]
pub async fn rescan_location(
    state: State<'_, AppState>,
    library: String,
    location: String,
) -> Res<()> {
    done(&state, Command::RescanLocation { library, location }).await
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
    let set = Command::SetLocationPreviews {
        library,
        location,
        on,
    };
    location_reply(run(&state, set).await?)
}

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
    let page = Command::Page {
        library,
        location,
        dir,
        offset,
        limit,
    };
    expect_reply!(run(&state, page).await?, Reply::Page { page } => page)
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
    let get = Command::Entry { library, entry };
    expect_reply!(run(&state, get).await?, Reply::Entry { entry, path } => EntryDetails { entry, path })
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
    let save = Command::SaveEntry { library, entry };
    expect_reply!(run(&state, save).await?, Reply::Download { download } => download)
}

#[tauri::command]
#[specta::specta]
pub async fn pause_download(state: State<'_, AppState>, id: String) -> Res<()> {
    done(&state, Command::PauseDownload { id }).await
}

#[tauri::command]
#[specta::specta]
pub async fn resume_download(state: State<'_, AppState>, id: String) -> Res<()> {
    done(&state, Command::ResumeDownload { id }).await
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_download(state: State<'_, AppState>, id: String) -> Res<()> {
    done(&state, Command::CancelDownload { id }).await
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
    let get = Command::Entry { library, entry };
    let path =
        expect_reply!(run(&state, get).await?, Reply::Entry { path, .. } => PathBuf::from(path))?;
    // It may read the file's start: off the async threads.
    let program = !reveal && {
        let path = path.clone();
        tauri::async_runtime::spawn_blocking(move || {
            ferry_core::index::program::runs_when_opened(&path)
        })
        .await
        .map_err(err)?
    };
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
