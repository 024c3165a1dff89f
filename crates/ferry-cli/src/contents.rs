//! `ferry location …`, `ferry ls` and `ferry get`: a library's folders and what the index
//! knows of them. Without a running node, `location add` and `rescan` index in this process,
//! with progress, and can be interrupted (the next `rescan`, or a node, resumes); attached to
//! a running node, they ask it and follow its index job.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ferry_core::control::{Command, Reply};
use ferry_core::library::contents::parse_loc;
use ferry_core::library::media::downloads::DownloadState;
use ferry_core::library::sync::MemberSync;
use ferry_core::library::wire::LibraryId;
use ferry_core::{Event, Libraries};
use ferry_index::{EntryInfo, EntryKind, LocationId, LocationInfo};
use serde_json::json;

use crate::front::Front;
use crate::out::{bytes, say, short, Out};

/// "5m ago" for a unix-ms time.
fn since(ms: i64) -> String {
    crate::out::ago((ferry_util::unix_now_ms() - ms).max(0) / 1000)
}

/// " on DEVICE (online|offline, as of …)" for another member's location; "" for ours.
pub fn owner_suffix(l: &LocationInfo) -> String {
    if l.local {
        return String::new();
    }
    let who = l.owner_name.as_deref().unwrap_or("another member");
    let online = match l.owner_online {
        Some(true) => "online".to_string(),
        Some(false) => "offline".to_string(),
        None => "online unknown".to_string(),
    };
    let as_of = l
        .synced_at
        .map(|ms| format!(", as of {}", since(ms)))
        .unwrap_or_else(|| ", not synced yet".into());
    format!(" on {who} ({online}{as_of})")
}

pub fn print_location(out: &Out, l: &LocationInfo) {
    if out.json {
        println!("{}", json!({"type": "location", "location": l}));
        return;
    }
    let state = if !l.online {
        format!("offline: {}", l.error.as_deref().unwrap_or("not available"))
    } else {
        l.state.clone()
    };
    say!(
        "{}  {}{}  {} files, {} folders, {}  ({} with content ids{})  [{}]",
        short(&l.id),
        if l.local { &l.path } else { &l.name },
        owner_suffix(l),
        l.files,
        l.folders,
        bytes(l.bytes),
        l.identified,
        if l.errors > 0 {
            format!(", {} skipped", l.errors)
        } else {
            String::new()
        },
        state
    );
}

pub fn print_locations(out: &Out, locs: &[LocationInfo]) {
    if locs.is_empty() && !out.json {
        say!("No locations yet (ferry location add PATH --library LIBRARY).");
    }
    for l in locs {
        print_location(out, l);
    }
}

/// `ferry location add`: the node (or, without one, this process) indexes it.
pub async fn add(front: &Front, out: &Out, lib: &str, path: &Path, index: bool) -> Result<()> {
    let path = std::path::absolute(path)?.display().to_string();
    let add = Command::AddLocation {
        library: lib.into(),
        path,
    };
    let Reply::Location { location } = front.call(add).await? else {
        bail!("the node answered something else than a location");
    };
    print_location(out, &location);
    index_now(front, out, lib, &location, index).await
}

/// `ferry location rescan`.
pub async fn rescan(front: &Front, out: &Out, lib: &str, loc: &str) -> Result<()> {
    let rescan = Command::RescanLocation {
        library: lib.into(),
        location: loc.into(),
    };
    let location = match front {
        // Without a node, this process walks it (below).
        Front::Offline(engine) => {
            let libs = engine.libraries();
            let id = libs.find(lib)?;
            let c = libs.contents().of(&id)?;
            let loc = c
                .find_location(loc)
                .or_else(|_| parse_loc(loc).map_err(anyhow::Error::from))?;
            libs.contents().location(&id, &loc)?
        }
        _ => match front.call(rescan).await? {
            Reply::Location { location } => location,
            _ => bail!("the node answered something else than a location"),
        },
    };
    index_now(front, out, lib, &location, true).await
}

/// Indexes a location here (no node runs), or follows the running node's job until it ends.
async fn index_now(
    front: &Front,
    out: &Out,
    lib: &str,
    location: &LocationInfo,
    index: bool,
) -> Result<()> {
    if !index {
        return Ok(());
    }
    if let Front::Offline(engine) = front {
        let libs = engine.libraries();
        return run_index(libs, out, &libs.find(lib)?, &parse_loc(&location.id)?);
    }
    loop {
        match front.event().await {
            Some(Event::Index { progress }) if progress.location == location.id => {
                if out.json {
                    say!("{}", json!({"type": "index", "progress": progress}));
                } else {
                    eprint!(
                        "\r{}: {}/{}   ",
                        progress.phase, progress.done, progress.total
                    );
                }
                match progress.phase.as_str() {
                    "done" => break,
                    "failed" => bail!("indexing failed: {}", progress.message.unwrap_or_default()),
                    _ => {}
                }
            }
            Some(_) => {}
            None => bail!("the node stopped"),
        }
    }
    if !out.json {
        eprintln!();
    }
    let list = Command::Locations {
        library: lib.into(),
    };
    if let Reply::Locations { locations } = front.call(list).await? {
        if let Some(l) = locations.iter().find(|l| l.id == location.id) {
            print_location(out, l);
        }
    }
    Ok(())
}

/// `ferry get LIB LOCATION/PATH DEST`: a member's file or folder, here, verified, with
/// progress; running it again resumes.
pub async fn get(
    front: &Front,
    out: &Out,
    library: String,
    path: String,
    dest: String,
    wait: Duration,
) -> Result<i32> {
    let started = Instant::now();
    let get = Command::Get {
        library,
        path,
        dest,
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    };
    let Reply::Download { download } = front.call(get).await? else {
        bail!("the node answered something else than a download");
    };
    let id = download.id.clone();
    let mut last = download;
    loop {
        match &last.state {
            DownloadState::Done { .. } => {
                out.get_done(&last, started.elapsed());
                return Ok(0);
            }
            DownloadState::Failed { reason } => bail!("{reason}"),
            DownloadState::Cancelled => bail!("cancelled"),
            DownloadState::Running | DownloadState::Paused => {}
        }
        last = loop {
            match front.event().await {
                Some(Event::Download { download }) if download.id == id => {
                    if download.state == DownloadState::Running {
                        out.get_progress(&download.progress);
                    }
                    break download;
                }
                Some(_) => {}
                None => bail!("the node stopped"),
            }
        };
    }
}

/// `ferry sync status LIBRARY`: per member, what this node holds of its rows.
pub fn print_sync(out: &Out, members: &[MemberSync]) {
    for m in members {
        if out.json {
            println!("{}", json!({"type": "member_sync", "member": m}));
            continue;
        }
        let online = match m.online {
            Some(true) => "online",
            Some(false) => "offline",
            None => "online unknown",
        };
        let held = if m.me {
            format!(
                "this node: {} locations, {} entries, at change {}",
                m.locations, m.entries, m.seq
            )
        } else {
            format!(
                "holds {} locations, {} entries, up to change {} of {}{}{}",
                m.locations,
                m.entries,
                m.seq,
                m.head,
                if m.behind > 0 {
                    format!(" ({} behind at most)", m.behind)
                } else {
                    " (up to date)".into()
                },
                m.synced_at
                    .map(|ms| format!(", synced {}", since(ms)))
                    .unwrap_or_default()
            )
        };
        say!("{}  {}  [{online}]  {held}", m.member.short(), m.name);
        if let Some(p) = &m.pull {
            say!(
                "    pull: {} {}/{}",
                p.state.replace('_', " "),
                p.received,
                p.total
            );
        }
    }
}

/// Walk, content ids and thumbnails, here and now, printing progress.
fn run_index(libs: &Libraries, out: &Out, lib: &LibraryId, loc: &LocationId) -> Result<()> {
    let c = libs.contents().of(lib)?;
    let no = AtomicBool::new(false);
    let step = |phase: &str, done: u64, total: u64| {
        if out.json {
            say!(
                "{}",
                json!({"type": "index", "progress": {"library": lib.hex(), "location": ferry_index::db::hex(loc), "phase": phase, "done": done, "total": total}})
            );
        } else if total > 0 {
            eprint!("\r{phase}: {done}/{total}   ");
        } else {
            eprint!("\r{phase}: {done}   ");
        }
    };
    let t0 = Instant::now();
    let r = c.scan(loc, &no, &mut |n| step("walking", n, 0))?;
    let walk = t0.elapsed();
    let t1 = Instant::now();
    let id = c.identify(loc, &no, &mut |d, t| step("identifying", d, t))?;
    let ident = t1.elapsed();
    let t2 = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let th = c.thumbnails(libs.contents().thumbs(), threads, &no, &|d, t| {
        step("thumbnails", d, t)
    })?;
    if !out.json {
        eprintln!();
    }
    for p in r.problems.iter().chain(&id.problems).chain(&th.problems) {
        if out.json {
            say!(
                "{}",
                json!({"type": "skipped", "path": p.path, "error": p.error})
            );
        } else {
            say!("skipped {}: {}", p.path, p.error);
        }
    }
    let summary = json!({
        "type": "indexed",
        "seen": r.seen, "added": r.added, "updated": r.updated, "removed": r.removed,
        "skipped": r.problem_count + id.problem_count,
        "identified": id.identified, "changed_while_read": id.changed,
        "thumbnails": th.made, "thumbnails_reused": th.reused, "thumbnails_failed": th.failed,
        "walk_ms": walk.as_millis() as u64, "identify_ms": ident.as_millis() as u64,
        "thumbnails_ms": t2.elapsed().as_millis() as u64,
    });
    if out.json {
        say!("{summary}");
    } else {
        say!(
            "Indexed {} paths in {:.1} s ({} new, {} changed, {} gone, {} skipped); {} content ids in {:.1} s; {} thumbnails ({} failed) in {:.1} s.",
            r.seen,
            walk.as_secs_f64(),
            r.added,
            r.updated,
            r.removed,
            r.problem_count + id.problem_count,
            id.identified,
            ident.as_secs_f64(),
            th.made + th.reused,
            th.failed,
            t2.elapsed().as_secs_f64()
        );
    }
    print_location(out, &c.location(loc)?);
    Ok(())
}

pub fn print_entries(out: &Out, entries: &[EntryInfo]) {
    if out.json {
        for e in entries {
            println!("{}", json!({"type": "entry", "entry": e}));
        }
        return;
    }
    for e in entries {
        let kind = match e.kind {
            EntryKind::Dir => "dir ",
            EntryKind::File => "file",
            EntryKind::Symlink => "link",
            EntryKind::Other => "othr",
        };
        let size = if e.kind == EntryKind::File {
            bytes(e.size)
        } else {
            String::new()
        };
        let cas = e.cas.as_deref().map_or("-", |c| &c[..12.min(c.len())]);
        let err = e
            .error
            .as_deref()
            .map(|x| format!("  ({x})"))
            .unwrap_or_default();
        say!(
            "{kind}  {size:>10}  {cas:<12}  {}{}{err}",
            e.name,
            if e.kind == EntryKind::Dir { "/" } else { "" }
        );
    }
}
