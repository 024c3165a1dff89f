//! The live watcher: `notify` events, debounced into one batch of paths per location.
//!
//! Events are only hints of where to look ([`crate::changes`] checks the disk), so the
//! debouncer just collects paths: a batch goes out once events have been quiet for
//! `quiet` (or `max_wait` after the first, so a busy folder still shows changes), about a
//! second at worst. When the OS says it dropped events (an inotify queue overflow) or the
//! watcher fails, the location gets a [`WatchEvent::Rescan`] instead of silent drift.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

use crate::db::{lock, LocationId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// These paths (absolute) changed in some way.
    Changed {
        location: LocationId,
        paths: Vec<PathBuf>,
    },
    /// Events were lost (or the watcher failed): walk the whole location again.
    Rescan { location: LocationId, why: String },
}

#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    pub quiet: Duration,
    pub max_wait: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(150),
            max_wait: Duration::from_millis(750),
        }
    }
}

type Roots = Arc<Mutex<Vec<(LocationId, PathBuf)>>>;

/// Watches location folders recursively and reports batches to a sink.
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    roots: Roots,
}

enum Raw {
    Paths(Vec<PathBuf>),
    RescanAll(String),
    Rescan(Vec<PathBuf>, String),
}

fn location_of(roots: &[(LocationId, PathBuf)], p: &Path) -> Option<LocationId> {
    roots
        .iter()
        .filter(|(_, r)| p.starts_with(r))
        .max_by_key(|(_, r)| r.as_os_str().len())
        .map(|(id, _)| *id)
}

impl Watcher {
    /// Starts a watcher (watching nothing yet); `sink` is called from its own thread.
    pub fn new(
        debounce: Debounce,
        sink: impl Fn(WatchEvent) + Send + 'static,
    ) -> Result<Watcher, notify::Error> {
        let (tx, rx) = mpsc::channel::<Raw>();
        let inner = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let raw = match ev {
                Ok(ev) if ev.need_rescan() => {
                    if ev.paths.is_empty() {
                        Raw::RescanAll("the system dropped file events (queue overflow)".into())
                    } else {
                        Raw::Rescan(ev.paths, "the system asked for a rescan".into())
                    }
                }
                Ok(ev) if ev.kind.is_access() => return,
                Ok(ev) => Raw::Paths(ev.paths),
                Err(e) if e.paths.is_empty() => Raw::RescanAll(format!("watcher error: {e}")),
                Err(e) => Raw::Rescan(e.paths.clone(), format!("watcher error: {e}")),
            };
            let _ = tx.send(raw);
        })?;
        let roots: Roots = Arc::new(Mutex::new(Vec::new()));
        let r = roots.clone();
        std::thread::Builder::new()
            .name("ferry-watch".into())
            .spawn(move || debounce_loop(rx, r, debounce, sink))
            .map_err(notify::Error::io)?;
        Ok(Watcher { inner, roots })
    }

    /// Watches `root` (recursively) as location `id`.
    pub fn watch(&mut self, id: LocationId, root: &Path) -> Result<(), notify::Error> {
        self.inner.watch(root, RecursiveMode::Recursive)?;
        let mut roots = lock(&self.roots);
        roots.retain(|(l, _)| *l != id);
        roots.push((id, root.to_path_buf()));
        Ok(())
    }

    pub fn unwatch(&mut self, id: &LocationId) {
        let root = {
            let mut roots = lock(&self.roots);
            let root = roots.iter().find(|(l, _)| l == id).map(|(_, r)| r.clone());
            roots.retain(|(l, _)| l != id);
            root
        };
        if let Some(root) = root {
            // Fails if the folder is gone already, which is what we wanted anyway.
            let _ = self.inner.unwatch(&root);
        }
    }

    pub fn watching(&self, id: &LocationId) -> bool {
        lock(&self.roots).iter().any(|(l, _)| l == id)
    }
}

fn debounce_loop(rx: mpsc::Receiver<Raw>, roots: Roots, d: Debounce, sink: impl Fn(WatchEvent)) {
    let mut paths: HashMap<LocationId, BTreeSet<PathBuf>> = HashMap::new();
    let mut rescans: HashMap<LocationId, String> = HashMap::new();
    let mut first: Option<Instant> = None;
    loop {
        let wait = match first {
            None => Duration::from_secs(3600),
            Some(t) => d.quiet.min(d.max_wait.saturating_sub(t.elapsed())),
        };
        match rx.recv_timeout(wait) {
            Ok(raw) => {
                let roots = lock(&roots).clone();
                match raw {
                    Raw::Paths(ps) => {
                        for p in ps {
                            if let Some(l) = location_of(&roots, &p) {
                                paths.entry(l).or_default().insert(p);
                            }
                        }
                    }
                    Raw::Rescan(ps, why) => {
                        for p in ps {
                            if let Some(l) = location_of(&roots, &p) {
                                rescans.insert(l, why.clone());
                            }
                        }
                    }
                    Raw::RescanAll(why) => {
                        for (l, _) in roots {
                            rescans.insert(l, why.clone());
                        }
                    }
                }
                first.get_or_insert_with(Instant::now);
                if first.is_some_and(|t| t.elapsed() < d.max_wait) {
                    continue;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if first.take().is_none() {
            continue;
        }
        for (location, why) in rescans.drain() {
            paths.remove(&location);
            sink(WatchEvent::Rescan { location, why });
        }
        for (location, ps) in paths.drain() {
            sink(WatchEvent::Changed {
                location,
                paths: ps.into_iter().collect(),
            });
        }
    }
}
