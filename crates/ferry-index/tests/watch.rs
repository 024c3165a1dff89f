//! The live watcher with real inotify: creates, modifies, renames, deletes and whole-folder
//! moves reach the index (latency printed); an event-queue overflow turns into a rescan; an
//! unmounted drive's location goes offline with its rows kept.

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ferry_index::watch::Debounce;
use ferry_index::{Contents, EntryKind, LocationId, WatchEvent, Watcher};
use support::*;

/// The overflow test lowers a system-wide inotify limit for a moment; the others must not make
/// their watchers during it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root && std::env::var_os("CI").is_some() {
        panic!("CI must run as root (inotify limits, tmpfs mounts)");
    }
    if !root {
        eprintln!("SKIPPED: needs root");
    }
    root
}

/// A watcher whose batches are applied to `c` (what the node does), reporting each applied
/// batch or rescan on the returned channel.
fn watching(c: Arc<Contents>, loc: LocationId, root: &Path) -> (Watcher, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let mut w = Watcher::new(Debounce::default(), move |ev| {
        let what = match &ev {
            WatchEvent::Changed { location, paths } => {
                let r = c.apply(location, paths).unwrap();
                format!("changed {r:?}")
            }
            WatchEvent::Rescan { location, why } => {
                c.scan(location, &AtomicBool::new(false), &mut |_| {})
                    .unwrap();
                format!("rescan: {why}")
            }
        };
        let _ = tx.send(what);
    })
    .unwrap();
    w.watch(loc, root).unwrap();
    (w, rx)
}

/// Waits until `f` holds, returning how long it took from `since`.
fn until(since: Instant, what: &str, f: impl Fn() -> bool) -> Duration {
    while since.elapsed() < Duration::from_secs(10) {
        if f() {
            return since.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{what}: not seen within 10 s");
}

#[test]
fn every_kind_of_disk_change_reaches_the_index() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir_all(root.join("album/2026")).unwrap();
    std::fs::write(root.join("album/2026/a.jpg"), b"a").unwrap();
    let c = Arc::new(contents(t.path()));
    let loc = loc_id(&c.add_location(&root).unwrap());
    c.scan(&loc, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let (_w, _rx) = watching(c.clone(), loc, &root);
    let has = |p: &str| ids(&c, &loc).contains_key(p);
    let mut lat = Vec::new();

    let t0 = Instant::now();
    std::fs::write(root.join("new.txt"), b"hello").unwrap();
    lat.push(("create", until(t0, "create", || has("new.txt"))));

    let t0 = Instant::now();
    std::fs::write(root.join("new.txt"), b"hello, longer").unwrap();
    lat.push((
        "modify",
        until(t0, "modify", || index(&c, &loc)["new.txt"].1 == 13),
    ));

    let id = ids(&c, &loc)["album"].clone();
    let t0 = Instant::now();
    std::fs::rename(root.join("album"), root.join("photos")).unwrap();
    lat.push((
        "folder rename",
        until(t0, "folder rename", || {
            ids(&c, &loc).get("photos").is_some_and(|i| *i == id) && has("photos/2026/a.jpg")
        }),
    ));

    std::fs::create_dir(root.join("archive")).unwrap();
    let t0 = Instant::now();
    std::fs::rename(root.join("photos/2026"), root.join("archive/2026")).unwrap();
    lat.push((
        "folder move",
        until(t0, "folder move", || {
            has("archive/2026/a.jpg") && !has("photos/2026")
        }),
    ));

    // A folder made elsewhere and moved in arrives whole.
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("deep/er")).unwrap();
    std::fs::write(outside.join("deep/er/f"), b"f").unwrap();
    let t0 = Instant::now();
    std::fs::rename(&outside, root.join("in")).unwrap();
    lat.push(("move in", until(t0, "move in", || has("in/deep/er/f"))));

    // Files written inside a folder moved in just now are seen too (its watch is new).
    let t0 = Instant::now();
    std::fs::write(root.join("in/deep/later"), b"l").unwrap();
    lat.push((
        "create in moved-in folder",
        until(t0, "later", || has("in/deep/later")),
    ));

    let t0 = Instant::now();
    std::fs::remove_dir_all(root.join("archive")).unwrap();
    lat.push(("delete folder", until(t0, "delete", || !has("archive"))));

    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(index(&c, &loc), disk(&root));
    // A benchmark, not a bound (`until` fails a change not seen within 10 s).
    for (what, d) in &lat {
        println!("watcher latency, {what}: {:.0} ms", d.as_secs_f64() * 1e3);
    }
}

#[test]
fn an_event_queue_overflow_becomes_a_rescan() {
    let _serial = serial();
    if !is_root() {
        return;
    }
    const LIMIT: &str = "/proc/sys/fs/inotify/max_queued_events";
    let old = std::fs::read_to_string(LIMIT).unwrap();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir(&root).unwrap();
    let c = Arc::new(contents(t.path()));
    let loc = loc_id(&c.add_location(&root).unwrap());
    c.scan(&loc, &AtomicBool::new(false), &mut |_| {}).unwrap();
    // The limit is read when an inotify instance is made: a tiny queue for this watcher only.
    std::fs::write(LIMIT, "16").unwrap();
    let made = std::panic::catch_unwind(|| watching(c.clone(), loc, &root));
    std::fs::write(LIMIT, old.trim()).unwrap();
    let (_w, rx) = made.unwrap();
    for i in 0..3000 {
        std::fs::write(root.join(format!("{i}")), b"x").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw = Vec::new();
    while Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(200)) {
            saw.push(m);
        }
        if saw.iter().any(|m| m.starts_with("rescan")) && c.location(&loc).unwrap().files == 3000 {
            break;
        }
    }
    let rescan = saw.iter().find(|m| m.starts_with("rescan"));
    println!("overflow: {rescan:?} after {} batches", saw.len());
    assert!(rescan.is_some(), "{saw:?}");
    assert_eq!(c.location(&loc).unwrap().files, 3000);
    assert_eq!(index(&c, &loc), disk(&root));
}

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_unmounted_drive_is_offline_not_deleted() {
    let _serial = serial();
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("drive");
    std::fs::create_dir(&root).unwrap();
    let mount = || {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(&root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs");
        Mount(root.clone())
    };
    let m = mount();
    for i in 0..50 {
        std::fs::write(root.join(format!("{i}.txt")), b"on the drive").unwrap();
    }
    let c = Arc::new(contents(t.path()));
    let loc = loc_id(&c.add_location(&root).unwrap());
    c.scan(&loc, &AtomicBool::new(false), &mut |_| {}).unwrap();
    drop(m); // unplugged: an empty mount point remains at the path
    assert!(!c.check_online(&loc).unwrap());
    let info = c.location(&loc).unwrap();
    println!("unplugged: {:?}", info.error);
    assert_eq!((info.online, info.files), (false, 50));
    let r = c.scan(&loc, &AtomicBool::new(false), &mut |_| {});
    assert!(r.is_err(), "an offline location is not scanned");
    assert_eq!(c.location(&loc).unwrap().files, 50);

    let _m = mount(); // plugged back in, with one file changed while away
    for i in 0..50 {
        std::fs::write(root.join(format!("{i}.txt")), b"on the drive").unwrap();
    }
    std::fs::write(root.join("0.txt"), b"edited elsewhere").unwrap();
    assert!(c.check_online(&loc).unwrap());
    c.scan(&loc, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(index(&c, &loc), disk(&root));
    assert_eq!(
        index(&c, &loc)["0.txt"],
        (EntryKind::File, "edited elsewhere".len() as u64)
    );
}
