//! `ferry location …` and `ferry ls`: a library's folders and what the index knows of them.
//! They work without a node (and beside a running one, which picks up a location added here
//! within 5 s); `add` and `rescan` index in this process, with progress, and can be
//! interrupted: the next `rescan` (or a running node) resumes.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Result};
use ferry_core::library::contents::parse_loc;
use ferry_core::library::wire::LibraryId;
use ferry_core::Libraries;
use ferry_index::{EntryInfo, EntryKind, LocationId, LocationInfo};
use serde_json::json;

use crate::out::say;

use crate::out::{bytes, Out};

fn location(libs: &Libraries, lib: &LibraryId, query: &str) -> Result<LocationId> {
    let c = libs.contents().of(lib)?;
    c.find_location(query)
        .or_else(|_| parse_loc(query).map_err(anyhow::Error::from))
}

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

fn print_location(out: &Out, l: &LocationInfo) {
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
        &l.id[..8],
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

pub fn list(libs: &Libraries, out: &Out, lib: &str) -> Result<()> {
    let lib = libs.find(lib)?;
    let locs = libs.contents().locations(&lib)?;
    if locs.is_empty() && !out.json {
        say!("No locations yet (ferry location add PATH --library LIBRARY).");
    }
    for l in &locs {
        print_location(out, l);
    }
    Ok(())
}

pub fn add(libs: &Libraries, out: &Out, lib: &str, path: &Path, index: bool) -> Result<()> {
    let lib = libs.find(lib)?;
    let info = libs.contents().add_location(&lib, path)?;
    print_location(out, &info);
    if index {
        run_index(libs, out, &lib, &parse_loc(&info.id)?)?;
    }
    Ok(())
}

pub fn rescan(libs: &Libraries, out: &Out, lib: &str, loc: &str) -> Result<()> {
    let lib = libs.find(lib)?;
    let loc = location(libs, &lib, loc)?;
    run_index(libs, out, &lib, &loc)
}

pub fn rename(libs: &Libraries, out: &Out, lib: &str, loc: &str, name: &str) -> Result<()> {
    let lib = libs.find(lib)?;
    let loc = location(libs, &lib, loc)?;
    let info = libs.contents().rename_location(&lib, &loc, name)?;
    print_location(out, &info);
    Ok(())
}

/// `ferry sync status LIBRARY`: per member, what this node holds of its rows.
pub fn sync_status(libs: &Libraries, out: &Out, lib: &str) -> Result<()> {
    let lib = libs.find(lib)?;
    for m in libs.sync_status(&lib)? {
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
    Ok(())
}

pub fn remove(libs: &Libraries, out: &Out, lib: &str, loc: &str) -> Result<()> {
    let lib = libs.find(lib)?;
    let loc = location(libs, &lib, loc)?;
    let info = libs.contents().of(&lib)?.location(&loc)?;
    libs.contents().remove_location(&lib, &loc)?;
    out.note(&format!(
        "Removed location {} from the library (the folder is untouched).",
        info.path
    ));
    Ok(())
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

/// `ferry ls LIBRARY [LOCATION[/PATH]]`: the locations, or a folder's entries.
pub fn ls(libs: &Libraries, out: &Out, lib: &str, path: Option<&str>) -> Result<()> {
    let lib_id = libs.find(lib)?;
    let Some(path) = path else {
        return list(libs, out, lib);
    };
    let (l, entry) = resolve(libs, &lib_id, lib, path)?;
    let c = libs.contents().of(&lib_id)?;
    match entry {
        Some(e) if e.kind != EntryKind::Dir => print_entries(out, &[e]),
        Some(e) => print_entries(out, &c.list(&parse_loc(&l.id)?, &e.path)?),
        None => print_entries(out, &c.list(&parse_loc(&l.id)?, "")?),
    }
}

/// LOCATION[/PATH] of a library: its location, and the entry PATH names (`None` for the
/// location itself). A folder's own entry is returned for it, so `ls` lists its contents.
fn resolve(
    libs: &Libraries,
    lib_id: &LibraryId,
    lib: &str,
    path: &str,
) -> Result<(LocationInfo, Option<EntryInfo>)> {
    let c = libs.contents().of(lib_id)?;
    // The longest location name (or id prefix) that starts the path.
    let path = path.trim_matches('/');
    let mut found = None;
    for l in c.locations()? {
        for key in [
            l.name.as_str(),
            &l.id[..8.min(l.id.len())],
            l.path.trim_start_matches('/'),
        ] {
            if path == key || path.starts_with(&format!("{key}/")) {
                let rest = path[key.len()..].trim_start_matches('/').to_string();
                if found
                    .as_ref()
                    .is_none_or(|(_, r): &(LocationInfo, String)| rest.len() < r.len())
                {
                    found = Some((l.clone(), rest));
                }
            }
        }
    }
    let Some((l, rest)) = found else {
        bail!("no location matches \"{path}\" (see ferry ls {lib})");
    };
    if rest.is_empty() {
        return Ok((l, None));
    }
    let parent = rest.rsplit_once('/').map_or("", |(p, _)| p);
    let name = rest.rsplit('/').next().unwrap_or(&rest);
    let hit = c
        .list(&parse_loc(&l.id)?, parent)?
        .into_iter()
        .find(|e| e.name == name);
    match hit {
        Some(e) => Ok((l, Some(e))),
        None => bail!("{} has no \"{rest}\"", l.name),
    }
}

/// `ferry get LIB LOCATION/PATH [DEST]`: a member's file or folder, here, verified, with
/// progress; running it again resumes. Waits up to `wait` for a device that holds it.
pub async fn get(
    node: &ferry_core::Node,
    out: &Out,
    lib: &str,
    path: &str,
    dest: &Path,
    wait: std::time::Duration,
) -> Result<i32> {
    let libs = node.libraries();
    let lib_id = libs.find(lib)?;
    let (l, entry) = resolve(libs, &lib_id, lib, path)?;
    let Some(entry) = entry else {
        bail!(
            "name a file or folder inside the location (ferry ls {lib} {})",
            l.name
        );
    };
    let loc = parse_loc(&l.id)?;
    let started = Instant::now();
    // The owner's connection comes up in the background (members are dialled where they were
    // last seen); another member with the same content also serves it, so only wait a little.
    while !l.local
        && libs.contents().location(&lib_id, &loc)?.owner_online != Some(true)
        && started.elapsed() < wait
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let dest = std::path::absolute(dest)?;
    let t = Instant::now();
    let report = libs
        .download(&lib_id, &entry.id, &dest, |p| out.get_progress(p))
        .await?;
    out.get_done(&report, t.elapsed());
    Ok(0)
}

fn print_entries(out: &Out, entries: &[EntryInfo]) -> Result<()> {
    if out.json {
        for e in entries {
            println!("{}", json!({"type": "entry", "entry": e}));
        }
        return Ok(());
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
    Ok(())
}
