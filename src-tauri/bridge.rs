//! The event bridge: every node event goes to every window as one typed `NodeEvent`, and a
//! prompt or a finished transfer raises a system notification when no window has focus.

use ferry_core::{Event, TransferState};
use serde::Serialize;
use tauri::{AppHandle, Manager};
use tauri_notification_ext::notify;
use tauri_specta::Event as _;

use crate::backend::Backend;

/// One engine event, as the UI receives it.
#[derive(Debug, Clone, Serialize, specta::Type, tauri_specta::Event)]
pub struct NodeEvent(pub ferry_core::Event);

mod tauri_notification_ext {
    use tauri_plugin_notification::NotificationExt;

    pub fn notify(app: &tauri::AppHandle, title: &str, body: &str) {
        if let Err(e) = app.notification().builder().title(title).body(body).show() {
            tracing::debug!(error = %e, "notification not shown");
        }
    }
}

fn any_window_focused(app: &AppHandle) -> bool {
    app.webview_windows()
        .values()
        .any(|w| w.is_focused().unwrap_or(false))
}

/// Forwards the node's events until it stops (a replaced node gets its own forwarder).
pub fn forward(app: AppHandle, backend: &Backend) {
    let attached = backend.own().is_none();
    let mut events = backend.events();
    tauri::async_runtime::spawn(async move {
        loop {
            let Some(e) = events.next().await else {
                // A node this app attached to went away: the windows say so.
                if attached {
                    let _ = NodeEvent(Event::NodeStopped).emit(&app);
                }
                break;
            };
            if !any_window_focused(&app) {
                match &e {
                    Event::SpacedropPrompt { prompt } => notify(
                        &app,
                        "Ferry: files offered",
                        &format!(
                            "{} wants to send you {} file(s)",
                            if prompt.peer_name.is_empty() {
                                &prompt.peer_short
                            } else {
                                &prompt.peer_name
                            },
                            prompt.files
                        ),
                    ),
                    Event::Pairing { pairing }
                        if pairing.role == ferry_core::library::PairingRole::Responder
                            && matches!(
                                pairing.state,
                                ferry_core::PairingState::Confirm { .. }
                            ) =>
                    {
                        notify(
                            &app,
                            "Ferry: pairing request",
                            &format!(
                                "{} wants to add this device to \"{}\"",
                                if pairing.peer_name.is_empty() {
                                    &pairing.peer_short
                                } else {
                                    &pairing.peer_name
                                },
                                pairing.library_name
                            ),
                        )
                    }
                    Event::Transfer { transfer } if transfer.state == TransferState::Done => {
                        notify(
                            &app,
                            "Ferry: transfer done",
                            &format!("{} files, verified", transfer.files_done),
                        )
                    }
                    _ => {}
                }
            }
            let stopped = matches!(e, Event::NodeStopped);
            if let Err(err) = NodeEvent(e).emit(&app) {
                tracing::warn!(error = %err, "event not delivered to the UI");
            }
            if stopped {
                break;
            }
        }
    });
}
