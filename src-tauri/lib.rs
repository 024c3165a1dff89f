//! Ferry's desktop shell: thin glue between the engine and the web UI.
//!
//! - [`backend`]: the node behind the app: its own, or one already running on the data dir
//!   that it attached to; spoken to through the node's one command surface either way.
//! - [`settings`]: saved settings and environment overrides.
//! - [`commands`]: the typed command surface the UI calls (bindings in `ui/src/bindings.ts`).
//! - [`scheme`]: the `ferry://` URI scheme (thumbnails and files of the libraries, by id).
//! - [`media_http`]: the same answers over loopback HTTP for `<video>` and `<audio>` on Linux,
//!   whose web view cannot play media from a custom scheme.
//! - [`bridge`]: forwards the node's event stream to every window, and raises system
//!   notifications when no window has focus.
//!
//! The node itself lives in `ferry-core`; nothing here knows about files, peers or protocols
//! beyond passing them through.

// Nothing from the network or the disk may panic a node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backend;
pub mod bridge;
pub mod commands;
pub mod media_http;
pub mod scheme;
pub mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::Node;
use tauri::Manager;
use tauri_specta::{collect_commands, collect_events};

/// What the commands share: the node (its own is replaced when network settings change).
pub struct AppState {
    pub backend: tokio::sync::RwLock<backend::Backend>,
    pub settings: std::sync::Mutex<settings::Settings>,
    pub data_dir: PathBuf,
    /// Where media elements read from (`http://127.0.0.1:PORT/TOKEN`), where the web view
    /// cannot play media from `ferry://` (Linux).
    pub media_base: Option<String>,
}

/// The typed command and event surface; also what generates the TypeScript bindings.
pub fn specta_builder() -> tauri_specta::Builder<tauri::Wry> {
    tauri_specta::Builder::<tauri::Wry>::new()
        .commands(collect_commands![
            commands::snapshot,
            commands::control,
            commands::send_paths,
            commands::resend_with_pin,
            commands::pick_and_send,
            commands::answer_prompt,
            commands::pause_transfer,
            commands::resume_transfer,
            commands::renamed_files,
            commands::failed_files,
            commands::cancel_transfer,
            commands::connect_address,
            commands::show_in_folder,
            commands::pick_folder,
            commands::save_settings,
            commands::open_window,
            commands::create_library,
            commands::rename_library,
            commands::delete_library,
            commands::remove_member,
            commands::pair_peer,
            commands::answer_pairing,
            commands::add_location,
            commands::remove_location,
            commands::rescan_location,
            commands::set_location_previews,
            commands::list_entries,
            commands::entry_details,
            commands::open_entry,
            commands::save_entry,
            commands::pause_download,
            commands::resume_download,
            commands::cancel_download,
            commands::media_base,
        ])
        .events(collect_events![bridge::NodeEvent])
}

pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let builder = specta_builder();
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        .register_asynchronous_uri_scheme_protocol("ferry", scheme::handle)
        .invoke_handler(builder.invoke_handler())
        .setup(move |app| {
            builder.mount_events(app);
            let data_dir = settings::data_dir();
            let settings = settings::Settings::load(&data_dir);
            let cfg = settings.node_config(&data_dir)?;
            let backend = tauri::async_runtime::block_on(start(cfg))?;
            bridge::forward(app.handle().clone(), &backend);
            let media_base = if cfg!(target_os = "linux") {
                let started =
                    tauri::async_runtime::block_on(media_http::start(app.handle().clone()));
                match started {
                    Ok(m) => Some(m.base),
                    Err(e) => {
                        tracing::warn!(error = %e, "no loopback media server: video and audio will not play");
                        None
                    }
                }
            } else {
                None
            };
            app.manage(AppState {
                backend: tokio::sync::RwLock::new(backend),
                settings: std::sync::Mutex::new(settings),
                data_dir,
                media_base,
            });
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match result {
        Ok(app) => app,
        Err(e) => {
            eprintln!("ferry: could not start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|handle, event| {
        // Say goodbye to peers (and stop transfers resumably) before the process ends.
        if let tauri::RunEvent::Exit = event {
            if let Some(state) = handle.try_state::<AppState>() {
                tauri::async_runtime::block_on(async {
                    // A node started elsewhere keeps running: this app was one of its fronts.
                    if let Some(node) = state.backend.read().await.own() {
                        node.shutdown().await;
                    }
                });
            }
        }
    });
}

/// Starts the app's node; when one runs on the data dir already (`ferry node` as a service),
/// attaches to it instead.
async fn start(
    cfg: ferry_core::NodeConfig,
) -> Result<backend::Backend, Box<dyn std::error::Error>> {
    let data_dir = cfg.data_dir.clone();
    match Node::start(cfg).await {
        Ok(node) => Ok(backend::Backend::Own(Arc::new(node))),
        Err(ferry_core::NodeError::Locked(dir)) => {
            match ferry_core::control::local::Client::attach(&data_dir, true).await? {
                Some(client) => {
                    tracing::info!(data_dir = %dir.display(), node = %client.node().name, "attached to the Ferry node running here");
                    Ok(backend::Backend::Attached(Arc::new(client)))
                }
                None => Err(ferry_core::NodeError::Locked(dir).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    /// `ui/src/bindings.ts` is generated from these types; a stale copy fails here.
    /// Regenerate with `FERRY_WRITE_BINDINGS=1 cargo test -p ferry-desktop bindings`.
    #[test]
    fn bindings_are_fresh() {
        let checked_in =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/src/bindings.ts");
        let fresh = std::env::temp_dir().join(format!("ferry-bindings-{}.ts", std::process::id()));
        super::specta_builder()
            .export(specta_typescript::Typescript::default().header("// Generated by `cargo test -p ferry-desktop bindings` from src-tauri. Do not edit.\n"), &fresh)
            .expect("export bindings");
        let fresh_text = std::fs::read_to_string(&fresh).expect("read generated bindings");
        let _ = std::fs::remove_file(&fresh);
        if std::env::var_os("FERRY_WRITE_BINDINGS").is_some() {
            std::fs::write(&checked_in, &fresh_text).expect("write ui/src/bindings.ts");
        }
        let old = std::fs::read_to_string(&checked_in).unwrap_or_default();
        assert!(old == fresh_text, "ui/src/bindings.ts is stale: run FERRY_WRITE_BINDINGS=1 cargo test -p ferry-desktop bindings");
    }
}
