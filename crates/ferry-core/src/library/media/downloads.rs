//! Downloads as the app shows them: *Save to this device* starts one, and the transfer list
//! follows it (progress, pause, resume, cancel) through `download` events. A download is
//! [`Libraries::download`] run as a task: pausing stops the task and keeps its part files, so
//! resuming continues where it stopped; cancelling also deletes them.

use std::path::PathBuf;
use std::time::Instant;

use ferry_util::lock;
use serde::{Deserialize, Serialize};

use super::get::GetProgress;
use super::MediaError;
use crate::event::Event;
use crate::library::wire::LibraryId;
use crate::library::Libraries;

/// Where a download stands.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DownloadState {
    Running,
    Paused,
    /// Every file verified and placed; `path` is the file or folder made, `resumed` the
    /// bytes an earlier, interrupted run had fetched.
    Done {
        path: String,
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        resumed: u64,
    },
    Failed {
        reason: String,
    },
    Cancelled,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadInfo {
    pub id: String,
    pub library: String,
    pub entry: String,
    /// The file or folder's name.
    pub name: String,
    /// The device that holds it (its owner's name in the library).
    pub from: String,
    /// The folder it goes into.
    pub dest: String,
    pub progress: GetProgress,
    #[serde(flatten)]
    pub state: DownloadState,
}

/// Ended downloads (done or cancelled) listed at most; older ones are forgotten. Every
/// download of a node that runs for weeks was kept in memory before.
const ENDED_KEPT: usize = 100;

/// Forgets the oldest ended downloads past [`ENDED_KEPT`] (ids begin with their start time,
/// so they sort oldest first), never `just` (the one that just ended: a cancel still reads
/// it). Running, paused and failed ones (which resume) stay.
fn forget_ended(all: &mut std::collections::HashMap<String, Running>, just: &str) {
    let mut ended: Vec<String> = all
        .iter()
        .filter(|(id, r)| {
            id.as_str() != just
                && matches!(
                    r.info.state,
                    DownloadState::Done { .. } | DownloadState::Cancelled
                )
        })
        .map(|(id, _)| id.clone())
        .collect();
    if ended.len() <= ENDED_KEPT {
        return;
    }
    ended.sort();
    for id in &ended[..ended.len() - ENDED_KEPT] {
        all.remove(id);
    }
}

/// A download and the task running it (while it runs).
pub(crate) struct Running {
    info: DownloadInfo,
    dest: PathBuf,
    task: Option<tokio::task::AbortHandle>,
}

impl Libraries {
    /// Starts downloading `entry` of `lib` (a member's file or folder) into `dest`.
    pub async fn save(
        &self,
        lib: &LibraryId,
        entry: &str,
        dest: PathBuf,
    ) -> Result<DownloadInfo, MediaError> {
        // The same entry into the same folder is the same download (one part file each).
        let same = lock(&self.shared.media.downloads)
            .values()
            .find(|r| {
                r.info.library == lib.hex()
                    && r.info.entry == entry
                    && r.dest == dest
                    && matches!(r.info.state, DownloadState::Running | DownloadState::Paused)
            })
            .map(|r| r.info.clone());
        if let Some(info) = same {
            return Ok(info);
        }
        let (top, _, _) = self.plan(lib, entry, &dest).await?;
        // Ordered by when it started (the list shows them so), then unique.
        let id = format!(
            "{:012x}{}",
            ferry_util::unix_now_ms(),
            ferry_index::db::hex(&crate::library::wire::random::<4>())
        );
        let info = DownloadInfo {
            id: id.clone(),
            library: lib.hex(),
            entry: entry.to_owned(),
            name: top.info.name.clone(),
            from: self.shared.member_name(lib, &ferry_p2p::PeerId(top.owner)),
            dest: dest.display().to_string(),
            progress: GetProgress::default(),
            state: DownloadState::Running,
        };
        lock(&self.shared.media.downloads).insert(
            id.clone(),
            Running {
                info: info.clone(),
                dest,
                task: None,
            },
        );
        self.run_download(&id);
        Ok(info)
    }

    /// Every download of this run of the node, newest last.
    pub fn downloads(&self) -> Vec<DownloadInfo> {
        let mut v: Vec<DownloadInfo> = lock(&self.shared.media.downloads)
            .values()
            .map(|r| r.info.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Stops a running download; its part files stay for [`Self::resume_download`].
    pub fn pause_download(&self, id: &str) -> Result<(), MediaError> {
        self.stop_download(id, DownloadState::Paused)
    }

    /// Continues a paused or failed download from what its part files hold.
    pub fn resume_download(&self, id: &str) -> Result<(), MediaError> {
        {
            let mut all = lock(&self.shared.media.downloads);
            let r = all.get_mut(id).ok_or_else(|| unknown(id))?;
            if !matches!(
                r.info.state,
                DownloadState::Paused | DownloadState::Failed { .. }
            ) {
                return Ok(());
            }
            r.info.state = DownloadState::Running;
        }
        self.run_download(id);
        Ok(())
    }

    /// Stops a download and deletes what it had fetched of unfinished files.
    pub async fn cancel_download(&self, id: &str) -> Result<(), MediaError> {
        self.stop_download(id, DownloadState::Cancelled)?;
        let (lib, entry, dest) = {
            let all = lock(&self.shared.media.downloads);
            let r = all.get(id).ok_or_else(|| unknown(id))?;
            (r.info.library.clone(), r.info.entry.clone(), r.dest.clone())
        };
        if let Some(lib) = LibraryId::parse(&lib) {
            self.discard_parts(&lib, &entry, &dest).await;
        }
        Ok(())
    }

    fn stop_download(&self, id: &str, to: DownloadState) -> Result<(), MediaError> {
        let info = {
            let mut all = lock(&self.shared.media.downloads);
            let r = all.get_mut(id).ok_or_else(|| unknown(id))?;
            let live = matches!(r.info.state, DownloadState::Running | DownloadState::Paused)
                || (to == DownloadState::Cancelled
                    && matches!(r.info.state, DownloadState::Failed { .. }));
            if !live {
                return Ok(());
            }
            if let Some(task) = r.task.take() {
                task.abort();
            }
            r.info.state = to;
            let info = r.info.clone();
            forget_ended(&mut all, id);
            info
        };
        let _ = self.shared.events.send(Event::Download { download: info });
        Ok(())
    }

    /// Spawns the task of download `id`, which reports as it goes and when it ends. The task
    /// is spawned with the list locked and its handle stored before the lock is released, so
    /// a pause can never miss it.
    fn run_download(&self, id: &str) {
        let mut all = lock(&self.shared.media.downloads);
        let Some(r) = all.get_mut(id) else { return };
        let Some(lib) = LibraryId::parse(&r.info.library) else {
            return;
        };
        let (entry, dest) = (r.info.entry.clone(), r.dest.clone());
        let (me, task_id) = (self.clone(), id.to_owned());
        let task = tokio::spawn(async move {
            me.report_download(&task_id, None, None);
            let started = Instant::now();
            let result = me
                .download(&lib, &entry, &dest, |p| {
                    me.report_download(&task_id, Some(p), None)
                })
                .await;
            let end = match result {
                Ok(r) => {
                    tracing::info!(
                        files = r.files,
                        bytes = r.bytes,
                        resumed = r.resumed,
                        secs = started.elapsed().as_secs_f64(),
                        "download done"
                    );
                    DownloadState::Done {
                        path: r.path.display().to_string(),
                        resumed: r.resumed,
                    }
                }
                Err(e) => DownloadState::Failed {
                    reason: e.to_string(),
                },
            };
            me.report_download(&task_id, None, Some(end));
        });
        r.task = Some(task.abort_handle());
    }

    /// Records a download's progress or end, and tells the front ends.
    fn report_download(&self, id: &str, p: Option<&GetProgress>, end: Option<DownloadState>) {
        let info = {
            let mut all = lock(&self.shared.media.downloads);
            let Some(r) = all.get_mut(id) else { return };
            if let Some(p) = p {
                r.info.progress = p.clone();
            }
            if let Some(s) = end {
                r.info.state = s;
                r.task = None;
            }
            let info = r.info.clone();
            forget_ended(&mut all, id);
            info
        };
        let _ = self.shared.events.send(Event::Download { download: info });
    }
}

fn unknown(id: &str) -> MediaError {
    MediaError::Local(format!("no download {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: &str, state: DownloadState) -> (String, Running) {
        let info = DownloadInfo {
            id: id.into(),
            library: String::new(),
            entry: String::new(),
            name: String::new(),
            from: String::new(),
            dest: String::new(),
            progress: GetProgress::default(),
            state,
        };
        let r = Running {
            info,
            dest: PathBuf::new(),
            task: None,
        };
        (id.into(), r)
    }

    #[test]
    fn only_the_newest_ended_downloads_are_kept_and_never_one_that_can_resume() {
        let done = || DownloadState::Done {
            path: String::new(),
            resumed: 0,
        };
        let mut all: std::collections::HashMap<String, Running> = (0..ENDED_KEPT + 10)
            .map(|i| running(&format!("{i:04}"), done()))
            .collect();
        all.extend([
            running("0000a", DownloadState::Paused),
            running("0000b", DownloadState::Failed { reason: "x".into() }),
            running("0000c", DownloadState::Running),
            running("0000d", DownloadState::Cancelled),
        ]);
        // "0000d" (cancelled, among the oldest) just ended: it stays for its cancel to finish.
        forget_ended(&mut all, "0000d");
        let mut left: Vec<&str> = all.keys().map(String::as_str).collect();
        left.sort();
        assert_eq!(left.len(), ENDED_KEPT + 4);
        assert_eq!(&left[..5], ["0000a", "0000b", "0000c", "0000d", "0010"]);
        // Once something newer ends, it is the oldest ended one: it goes.
        all.extend([running("9999", done())]);
        forget_ended(&mut all, "9999");
        assert!(!all.contains_key("0000d"));
        assert!(all.contains_key("0010") && all.contains_key("9999"));
        assert_eq!(all.len(), ENDED_KEPT + 4);
    }
}
