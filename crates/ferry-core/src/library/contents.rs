//! A library's contents on this node: its locations, the jobs that index them, the live
//! watcher. (What `ferry://` serves is decided in `media`.) The indexing itself is
//! `ferry-index`; this runs it and reports it as events.
//!
//! Jobs run on two threads, so a long thumbnail pass never delays the watcher's updates: the
//! *index* lane (scans, watcher batches, content ids) and the *thumbnail* lane. A node
//! started with indexing on rescans every location at start (cheap when nothing changed:
//! ~300,000 entries/s) and so resumes any index a restart interrupted; it also checks every
//! 5 s whether an offline location came back (then watches and rescans it).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use ferry_util::lock;
use std::time::{Duration, Instant};

use ferry_index::thumb::ThumbStore;
use ferry_index::watch::Debounce;
use ferry_index::{Contents, EntryInfo, LocationId, LocationInfo, Page, WatchEvent, Watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::wire::LibraryId;
use super::LibraryError;
use crate::Event;

/// Where an index job is, for progress bars.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexProgress {
    pub library: String,
    pub location: String,
    /// `walking`, `identifying`, `thumbnails`, `done` or `failed`.
    pub phase: String,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub done: u64,
    /// 0 while unknown (a walk does not know its total).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub total: u64,
    /// What went wrong (`failed`), or how many paths were skipped and why (`done`).
    pub message: Option<String>,
}

enum Job {
    Scan(LibraryId, LocationId),
    Apply(LibraryId, LocationId, Vec<PathBuf>),
    Thumbs(LibraryId, LocationId),
}

struct Inner {
    libs_dir: PathBuf,
    node: [u8; 32],
    thumbs: ThumbStore,
    events: broadcast::Sender<Event>,
    open: Mutex<HashMap<LibraryId, Arc<Contents>>>,
    index: Mutex<Option<mpsc::Sender<Job>>>,
    thumb_lane: Mutex<Option<mpsc::Sender<Job>>>,
    watcher: Mutex<Option<Watcher>>,
    /// Which library each watched location belongs to.
    owners: Mutex<HashMap<LocationId, LibraryId>>,
    /// Scans queued and not yet started (a second request for one is dropped).
    queued: Mutex<HashSet<LocationId>>,
    /// Set when a location is removed, to stop its running job.
    cancels: Mutex<HashMap<LocationId, Arc<AtomicBool>>>,
    stop: AtomicBool,
    /// Fills in a location's owner (name, connected): the library layer knows them.
    decorate: OnceLock<Decorate>,
}

type Decorate = Box<dyn Fn(&LibraryId, &mut LocationInfo) + Send + Sync>;

/// Handle to the libraries' contents (cheap to clone).
#[derive(Clone)]
pub struct LibraryContents {
    inner: Arc<Inner>,
}

fn loc_hex(l: &LocationId) -> String {
    ferry_index::db::hex(l)
}

impl LibraryContents {
    pub(crate) fn new(
        data_dir: &Path,
        libs_dir: PathBuf,
        node: [u8; 32],
        events: broadcast::Sender<Event>,
    ) -> Self {
        LibraryContents {
            inner: Arc::new(Inner {
                libs_dir,
                node,
                thumbs: ThumbStore::new(data_dir.join("thumbnails")),
                events,
                open: Mutex::default(),
                index: Mutex::default(),
                thumb_lane: Mutex::default(),
                watcher: Mutex::default(),
                owners: Mutex::default(),
                queued: Mutex::default(),
                cancels: Mutex::default(),
                stop: AtomicBool::new(false),
                decorate: OnceLock::new(),
            }),
        }
    }

    /// The contents of a library (opened once and kept).
    pub fn of(&self, lib: &LibraryId) -> Result<Arc<Contents>, LibraryError> {
        let mut open = lock(&self.inner.open);
        if let Some(c) = open.get(lib) {
            return Ok(c.clone());
        }
        let path = self.inner.libs_dir.join(format!("{}.db", lib.hex()));
        if !path.exists() {
            return Err(LibraryError::NotFound(lib.hex()));
        }
        let c = Arc::new(Contents::open(&path, self.inner.node)?);
        open.insert(*lib, c.clone());
        Ok(c)
    }

    /// Forgets a deleted library (and stops watching its locations).
    pub(crate) fn forget(&self, lib: &LibraryId) {
        let locs: Vec<LocationId> = lock(&self.inner.owners)
            .iter()
            .filter(|(_, l)| *l == lib)
            .map(|(loc, _)| *loc)
            .collect();
        for loc in locs {
            self.stop_location(&loc);
        }
        lock(&self.inner.open).remove(lib);
    }

    pub(crate) fn set_decorate(&self, f: Decorate) {
        let _ = self.inner.decorate.set(f);
    }

    fn decorated(&self, lib: &LibraryId, mut l: LocationInfo) -> LocationInfo {
        if let Some(f) = self.inner.decorate.get() {
            f(lib, &mut l);
        }
        l
    }

    pub fn thumbs(&self) -> &ThumbStore {
        &self.inner.thumbs
    }

    pub fn running(&self) -> bool {
        lock(&self.inner.index).is_some()
    }

    /// Adds a folder to a library; a running node watches and indexes it at once. A folder
    /// whose marker names a location its owner reports offline (a drive moved here) is that
    /// location, taken over: same id, same entries. The marker is written (or rewritten,
    /// for a copy of a location that is still in use) at the folder's root.
    pub fn add_location(&self, lib: &LibraryId, path: &Path) -> Result<LocationInfo, LibraryError> {
        let c = self.of(lib)?;
        let moved = ferry_index::marker::read(path)
            .filter(|(l, _)| *l == lib.0)
            .and_then(|(_, loc)| self.location(lib, &loc).ok())
            // Its owner reported it gone (a drive unplugged there): otherwise it is a copy.
            .filter(|l| !l.local && !l.online);
        let taken = moved.is_some();
        let info = match moved {
            Some(l) => {
                let loc = parse_loc(&l.id)?;
                tracing::info!(location = %l.id, from = ?l.owner_name, "a member's location moved here");
                c.take_over(&loc, path)?
            }
            None => c.add_location(path)?,
        };
        let loc = parse_loc(&info.id)?;
        if let Err(e) = ferry_index::marker::write(path, &lib.0, &loc) {
            // A read-only folder: it works, but is a new location wherever it goes.
            tracing::info!(path = %path.display(), error = %e, "no location marker written");
        }
        self.emit_location(lib, &c, &loc);
        if self.running() {
            self.start_location(lib, &loc);
            // Its content ids came with it: the scan identifies nothing new, so the thumbnails
            // its old owner made (and this node has not copied) are made here now.
            if taken {
                if let Some(tx) = lock(&self.inner.thumb_lane).as_ref() {
                    let _ = tx.send(Job::Thumbs(*lib, loc));
                }
            }
        }
        Ok(info)
    }

    /// Removes one of this node's locations from a library (the folder itself is untouched).
    pub fn remove_location(&self, lib: &LibraryId, loc: &LocationId) -> Result<(), LibraryError> {
        let c = self.of(lib)?;
        if !c.location(loc)?.local {
            return Err(ferry_index::IndexError::NotOwner.into());
        }
        self.stop_location(loc);
        c.remove_location(loc)?;
        let _ = self.inner.events.send(Event::LocationRemoved {
            library: lib.hex(),
            location: loc_hex(loc),
        });
        Ok(())
    }

    /// Renames one of this node's locations, for every member.
    pub fn rename_location(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        name: &str,
    ) -> Result<LocationInfo, LibraryError> {
        let c = self.of(lib)?;
        let info = c.rename_location(loc, name)?;
        self.emit_location(lib, &c, loc);
        Ok(self.decorated(lib, info))
    }

    /// One location (this node's or a replica), its owner filled in.
    pub fn location(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
    ) -> Result<LocationInfo, LibraryError> {
        let l = self.of(lib)?.location(loc)?;
        Ok(self.decorated(lib, l))
    }

    /// Whether a member's location has its thumbnails copied here (preview sync). This node's
    /// own choice, not synced (`Libraries::set_location_previews` also wakes preview sync).
    pub(crate) fn set_previews(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        on: bool,
    ) -> Result<LocationInfo, LibraryError> {
        let c = self.of(lib)?;
        c.set_previews(loc, on)?;
        self.emit_location(lib, &c, loc);
        self.location(lib, loc)
    }

    /// Queues a full rescan (and content ids, thumbnails) of one of this node's locations.
    pub fn rescan(&self, lib: &LibraryId, loc: &LocationId) -> Result<(), LibraryError> {
        if !self.of(lib)?.location(loc)?.local {
            return Err(ferry_index::IndexError::NotOwner.into());
        }
        if !self.running() {
            return Err(LibraryError::NotRunning);
        }
        self.queue_scan(lib, loc);
        Ok(())
    }

    /// Every location of the library: this node's first, then other members' replicas.
    pub fn locations(&self, lib: &LibraryId) -> Result<Vec<LocationInfo>, LibraryError> {
        let v = self.of(lib)?.locations()?;
        Ok(v.into_iter().map(|l| self.decorated(lib, l)).collect())
    }

    pub fn list(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        dir: &str,
    ) -> Result<Vec<EntryInfo>, LibraryError> {
        Ok(self.of(lib)?.list(loc, dir)?)
    }

    /// A window of a folder's listing (see [`Contents::page`]).
    pub fn page(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        dir: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Page, LibraryError> {
        Ok(self.of(lib)?.page(loc, dir, offset, limit)?)
    }

    /// One entry, and where it is on this node's disk.
    pub fn entry(
        &self,
        lib: &LibraryId,
        entry: &str,
    ) -> Result<(EntryInfo, PathBuf), LibraryError> {
        let id = ferry_index::db::parse_id(entry)
            .ok_or_else(|| LibraryError::NotFound(format!("entry {entry}")))?;
        Ok(self.of(lib)?.entry(&id)?)
    }

    /// Starts the job lanes, the watcher and the offline poll, and queues a rescan of every
    /// location of `libs`. Called by a node started with indexing on.
    pub(crate) fn start(&self, libs: Vec<LibraryId>) {
        let (itx, irx) = mpsc::channel();
        let (ttx, trx) = mpsc::channel();
        *lock(&self.inner.index) = Some(itx);
        *lock(&self.inner.thumb_lane) = Some(ttx);
        let weak = Arc::downgrade(&self.inner);
        let w = Watcher::new(Debounce::default(), move |ev| {
            let Some(inner) = weak.upgrade() else { return };
            let me = LibraryContents { inner };
            let (loc, job) = match ev {
                WatchEvent::Changed { location, paths } => (location, Some(paths)),
                WatchEvent::Rescan { location, why } => {
                    tracing::warn!(location = %loc_hex(&location), %why, "rescanning");
                    (location, None)
                }
            };
            let Some(lib) = lock(&me.inner.owners).get(&loc).copied() else {
                return;
            };
            match job {
                Some(paths) => me.send_index(Job::Apply(lib, loc, paths)),
                None => me.queue_scan(&lib, &loc),
            }
        });
        match w {
            Ok(w) => *lock(&self.inner.watcher) = Some(w),
            Err(e) => tracing::error!(error = %e, "no file watcher: changes show after a rescan"),
        }
        for (lane, rx) in [("ferry-index", irx), ("ferry-thumbs", trx)] {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name(lane.into())
                .spawn(move || me.lane(rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start {lane}");
            }
        }
        for lib in libs {
            let Ok(c) = self.of(&lib) else { continue };
            for (loc, _) in c.location_paths().unwrap_or_default() {
                self.start_location(&lib, &loc);
            }
        }
        let weak = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new()
            .name("ferry-online".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                let Some(inner) = weak.upgrade() else { return };
                if inner.stop.load(Ordering::Relaxed) {
                    return;
                }
                LibraryContents { inner }.poll_online();
            });
    }

    /// Stops the lanes and the watcher (running jobs stop at their next check).
    pub(crate) fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        for c in lock(&self.inner.cancels).values() {
            c.store(true, Ordering::Relaxed);
        }
        lock(&self.inner.index).take();
        lock(&self.inner.thumb_lane).take();
        lock(&self.inner.watcher).take();
    }

    fn start_location(&self, lib: &LibraryId, loc: &LocationId) {
        lock(&self.inner.owners).insert(*loc, *lib);
        self.queue_scan(lib, loc);
    }

    pub(crate) fn stop_location(&self, loc: &LocationId) {
        if let Some(c) = lock(&self.inner.cancels).get(loc) {
            c.store(true, Ordering::Relaxed);
        }
        self.unwatch(loc);
        lock(&self.inner.owners).remove(loc);
    }

    fn queue_scan(&self, lib: &LibraryId, loc: &LocationId) {
        if lock(&self.inner.queued).insert(*loc) {
            self.send_index(Job::Scan(*lib, *loc));
        }
    }

    fn send_index(&self, job: Job) {
        if let Some(tx) = lock(&self.inner.index).as_ref() {
            let _ = tx.send(job);
        }
    }

    fn lane(&self, rx: mpsc::Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            if self.inner.stop.load(Ordering::Relaxed) {
                return;
            }
            let (lib, loc) = match &job {
                Job::Scan(l, c) | Job::Apply(l, c, _) | Job::Thumbs(l, c) => (*l, *c),
            };
            if matches!(job, Job::Scan(..)) {
                lock(&self.inner.queued).remove(&loc);
            }
            // A location removed meanwhile has no owner any more: drop its jobs.
            if !lock(&self.inner.owners).contains_key(&loc) {
                continue;
            }
            let Ok(c) = self.of(&lib) else { continue };
            let cancel = Arc::new(AtomicBool::new(false));
            lock(&self.inner.cancels).insert(loc, cancel.clone());
            let r = match job {
                Job::Scan(..) => self.scan(&lib, &loc, &c, &cancel),
                Job::Apply(_, _, paths) => self.apply(&lib, &loc, &c, &paths, &cancel),
                Job::Thumbs(..) => self.thumbnails(&lib, &loc, &c, &cancel),
            };
            lock(&self.inner.cancels).remove(&loc);
            if let Err(e) = r {
                if !matches!(e, ferry_index::IndexError::Cancelled) {
                    tracing::warn!(location = %loc_hex(&loc), error = %e, "index job failed");
                    self.progress(&lib, &loc, "failed", 0, 0, Some(e.to_string()));
                }
            }
            self.emit_location(&lib, &c, &loc);
        }
    }

    fn scan(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        c: &Contents,
        cancel: &AtomicBool,
    ) -> Result<(), ferry_index::IndexError> {
        let root = c.location(loc)?.path;
        if !c.check_online(loc)? {
            // Stays owned: the 5 s poll rescans it when it is back.
            self.unwatch(loc);
            return Ok(());
        }
        if let Some(w) = lock(&self.inner.watcher).as_mut() {
            // Watch before walking, so nothing changed during the walk is missed.
            if let Err(e) = w.watch(*loc, Path::new(&root)) {
                tracing::warn!(%root, error = %e, "cannot watch; changes show after a rescan");
            }
        }
        let mut tick = Throttle::new();
        let r = c.scan(loc, cancel, &mut |seen| {
            if tick.due() {
                self.progress(lib, loc, "walking", seen, 0, None);
            }
        })?;
        // Listings open on this location show the walk's rows now, not after the content ids
        // and thumbnails (minutes for 100,000 photos).
        self.emit_location(lib, c, loc);
        self.contents_changed(lib, loc);
        self.identify(lib, loc, c, cancel)?;
        self.contents_changed(lib, loc);
        let msg = (r.problem_count > 0).then(|| {
            let first = r
                .problems
                .first()
                .map(|p| format!(": {} ({})", p.path, p.error));
            format!(
                "{} paths skipped{}",
                r.problem_count,
                first.unwrap_or_default()
            )
        });
        self.progress(lib, loc, "done", r.seen, r.seen, msg);
        Ok(())
    }

    fn identify(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        c: &Contents,
        cancel: &AtomicBool,
    ) -> Result<(), ferry_index::IndexError> {
        let mut tick = Throttle::new();
        let r = c.identify(loc, cancel, &mut |done, total| {
            if tick.due() {
                self.progress(lib, loc, "identifying", done, total, None);
            }
        })?;
        if r.identified > 0 {
            if let Some(tx) = lock(&self.inner.thumb_lane).as_ref() {
                let _ = tx.send(Job::Thumbs(*lib, *loc));
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        c: &Contents,
        paths: &[PathBuf],
        cancel: &AtomicBool,
    ) -> Result<(), ferry_index::IndexError> {
        let r = c.apply(loc, paths)?;
        if r.offline {
            self.unwatch(loc);
        }
        if !r.is_empty() {
            self.emit_location(lib, c, loc);
            self.identify(lib, loc, c, cancel)?;
            self.contents_changed(lib, loc);
        }
        Ok(())
    }

    fn thumbnails(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        c: &Contents,
        cancel: &AtomicBool,
    ) -> Result<(), ferry_index::IndexError> {
        // Leave a core for the app itself.
        let threads =
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
        let tick = Mutex::new(Throttle::new());
        // Thumbnails are written in batches as they are made: open listings refetch every
        // second, so pictures fill in during a long pass.
        let refresh = Mutex::new(Throttle::every(Duration::from_secs(1)));
        let r = c.thumbnails(&self.inner.thumbs, threads, cancel, &|done, total| {
            if lock(&tick).due() {
                self.progress(lib, loc, "thumbnails", done, total, None);
            }
            if done > 0 && lock(&refresh).due() {
                self.contents_changed(lib, loc);
            }
        })?;
        let n = r.made + r.reused + r.failed;
        let msg = (r.failed > 0).then(|| format!("{} images could not be read", r.failed));
        self.progress(lib, loc, "done", n, n, msg);
        self.contents_changed(lib, loc);
        Ok(())
    }

    /// Offline locations that are back get watched and rescanned; online ones that went away
    /// are marked offline (an unplugged drive sends no event we can rely on).
    ///
    /// Locations added or removed by another process (`ferry location …` beside the app) are
    /// picked up here too.
    fn poll_online(&self) {
        let libs: Vec<LibraryId> = lock(&self.inner.open).keys().copied().collect();
        for lib in libs {
            let Ok(c) = self.of(&lib) else { continue };
            for (loc, _) in c.location_paths().unwrap_or_default() {
                if !lock(&self.inner.owners).contains_key(&loc) {
                    self.start_location(&lib, &loc);
                    self.emit_location(&lib, &c, &loc);
                }
            }
        }
        let owned: Vec<(LocationId, LibraryId)> = lock(&self.inner.owners)
            .iter()
            .map(|(a, b)| (*a, *b))
            .collect();
        for (loc, lib) in owned {
            let Ok(c) = self.of(&lib) else { continue };
            let Ok(before) = c.location(&loc) else {
                self.stop_location(&loc);
                let _ = self.inner.events.send(Event::LocationRemoved {
                    library: lib.hex(),
                    location: loc_hex(&loc),
                });
                continue;
            };
            let Ok(now) = c.check_online(&loc) else {
                continue;
            };
            if now != before.online {
                tracing::info!(location = %before.path, online = now, "location availability changed");
                if now {
                    self.queue_scan(&lib, &loc);
                } else {
                    self.unwatch(&loc);
                }
                self.emit_location(&lib, &c, &loc);
            }
        }
    }

    fn progress(
        &self,
        lib: &LibraryId,
        loc: &LocationId,
        phase: &str,
        done: u64,
        total: u64,
        message: Option<String>,
    ) {
        let _ = self.inner.events.send(Event::Index {
            progress: IndexProgress {
                library: lib.hex(),
                location: loc_hex(loc),
                phase: phase.into(),
                done,
                total,
                message,
            },
        });
    }

    fn unwatch(&self, loc: &LocationId) {
        if let Some(w) = lock(&self.inner.watcher).as_mut() {
            w.unwatch(loc);
        }
    }

    fn contents_changed(&self, lib: &LibraryId, loc: &LocationId) {
        let _ = self.inner.events.send(Event::ContentsChanged {
            library: lib.hex(),
            location: loc_hex(loc),
        });
    }

    fn emit_location(&self, lib: &LibraryId, c: &Contents, loc: &LocationId) {
        if let Ok(location) = c.location(loc) {
            let _ = self.inner.events.send(Event::Location {
                library: lib.hex(),
                location: self.decorated(lib, location),
            });
        }
    }
}

/// Whether the file at `path`, or a folder between it and its location (`rel` deep), is now a
/// symlink: the index never follows one, so neither does serving (a file swapped for a link
/// to `~/.ssh/id_ed25519` is not served). A swap between this check and the open is not
/// caught; the watcher reindexes it within a second.
pub(crate) fn swapped_for_symlink(path: &Path, rel: &str) -> bool {
    let depth = rel.split('/').count();
    path.ancestors()
        .take(depth)
        .any(|p| std::fs::symlink_metadata(p).map_or(true, |m| m.file_type().is_symlink()))
}

pub fn parse_loc(s: &str) -> Result<LocationId, LibraryError> {
    ferry_index::db::parse_id(s).ok_or_else(|| LibraryError::NotFound(format!("location {s}")))
}

/// At most four progress events a second per job.
struct Throttle(Option<Instant>, Duration);

impl Throttle {
    /// Progress reports: at most 4 a second.
    fn new() -> Self {
        Throttle::every(Duration::from_millis(250))
    }
    fn every(period: Duration) -> Self {
        Throttle(None, period)
    }
    fn due(&mut self) -> bool {
        if self.0.is_some_and(|t| t.elapsed() < self.1) {
            return false;
        }
        self.0 = Some(Instant::now());
        true
    }
}
