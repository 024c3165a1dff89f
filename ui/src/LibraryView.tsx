import { useEffect, useRef, useState } from "react";
import type { Api } from "./api";
import type { DownloadInfo, EntryDetails, EntryInfo, LocationInfo } from "./bindings";
import { EntryGrid } from "./EntryGrid";
import { crumbs, previewKind } from "./grid";
import { byDevice, count, formatBytes, locationsSummary, online, running, syncedAgo, type State } from "./state";
import { shown } from "./text";

function LocationItem({
  loc, state, library, active, api, onPick, onError,
}: {
  loc: LocationInfo;
  state: State;
  library: string;
  active: boolean;
  api: Api;
  onPick: () => void;
  onError: (e: unknown) => void;
}) {
  const [confirm, setConfirm] = useState(false);
  const job = running(state, loc.id);
  const last = state.progress[loc.id];
  const pct = job && job.total > 0 ? Math.min(100, (job.done * 100) / job.total) : null;
  const status = !loc.online
    ? loc.local ? "offline" : "folder offline on its device"
    : job
      ? `${job.phase}${job.total > 0 ? ` ${job.done.toLocaleString()} / ${job.total.toLocaleString()}` : job.done > 0 ? ` ${job.done.toLocaleString()}` : ""}`
      : loc.state === "done"
        ? "up to date"
        : loc.state;
  return (
    <li className={`location${active ? " active" : ""}${loc.online ? "" : " offline"}`} data-location={loc.id} aria-label={`Location ${shown(loc.name)}`}>
      <button className="location-pick" onClick={onPick} aria-current={active}>
        <span className="location-name">{shown(loc.name)}</span>
        <span className="location-path" title={shown(loc.path)}>
          {/* Ellipsised at the start (the end of a path says most); the path itself stays LTR. */}
          <bdi dir="ltr">{shown(loc.path)}</bdi>
        </span>
      </button>
      <div className="location-status">
        <span className={`dot ${loc.online ? "connected" : "offline"}`} />
        <span className="location-state">{status}</span>
      </div>
      {job && (
        <div className="bar" aria-label={`Indexing ${shown(loc.name)}`} role="progressbar" aria-valuenow={pct ?? undefined}>
          <div className={pct == null ? "indeterminate" : ""} style={{ width: `${pct ?? 30}%` }} />
        </div>
      )}
      <div className="location-figures">
        <span>{count(loc.files, "file")}</span>
        <span>{formatBytes(loc.bytes)}</span>
        {loc.files > 0 && <span>{Math.floor((loc.identified * 100) / loc.files)}% identified</span>}
      </div>
      {loc.errors > 0 && <div className="location-errors">{count(loc.errors, "entry", "entries")} could not be read</div>}
      {!job && last?.phase === "failed" && <div className="location-errors">{last.message}</div>}
      {loc.error && <div className="location-errors">{loc.error}</div>}
      {!loc.local && (
        <label className="check small-text location-previews" title="Copies of its thumbnails keep its pictures visible while its device is offline">
          <input type="checkbox" checked={loc.previews} onChange={(e) => api.setLocationPreviews(library, loc.id, e.target.checked).catch(onError)} />
          Keep thumbnails on this device
        </label>
      )}
      <div className="location-actions">
        {confirm ? (
          <>
            <span className="small-text">Remove from the library? The folder stays.</span>
            <button className="danger small" onClick={() => api.removeLocation(library, loc.id).catch(onError)}>Remove</button>
            <button className="ghost small" onClick={() => setConfirm(false)}>Keep</button>
          </>
        ) : (
          <>
            {loc.local && <button className="ghost small" disabled={!!job || !loc.online} onClick={() => api.rescanLocation(library, loc.id).catch(onError)}>Rescan</button>}
            {loc.local && <button className="ghost small" onClick={() => setConfirm(true)}>Remove…</button>}
          </>
        )}
      </div>
    </li>
  );
}

/** Asked before opening a file that opening would run (it may have come from a peer). */
function RunProgramDialog({ entry, onRun, onReveal, onClose }: {
  entry: EntryInfo;
  onRun: () => void;
  onReveal: () => void;
  onClose: () => void;
}) {
  const reveal = useRef<HTMLButtonElement>(null);
  useEffect(() => reveal.current?.focus(), []);
  return (
    <div className="overlay">
      <div className="dialog" role="alertdialog" aria-modal="true" aria-labelledby="run-title" aria-describedby="run-why" onKeyDown={(e) => e.key === "Escape" && onClose()}>
        <h3 id="run-title">Run “{shown(entry.name)}”?</h3>
        <p id="run-why">
          This file is a program, script or installer: opening it runs it, with your permissions. Run it only if you trust where it came from.
        </p>
        <div className="dialog-actions">
          <button className="ghost" onClick={onClose}>Cancel</button>
          <button className="danger" onClick={onRun}>Run</button>
          <button ref={reveal} onClick={onReveal}>Show in folder</button>
        </div>
      </div>
    </div>
  );
}

function Details({ api, library, downloads, loc, ownerOnline, entry, onClose, onOpen, onOpenFolder, onError }: {
  api: Api;
  library: string;
  /** Downloads (*Save to this device*): the latest of this entry shows how it goes. */
  downloads: DownloadInfo[];
  /** The entry's location: another member's is shown from the synced rows, its bytes fetched. */
  loc: LocationInfo;
  /** The device that holds the location is connected. */
  ownerOnline: boolean;
  entry: EntryInfo;
  onClose: () => void;
  onOpen: (e: EntryInfo) => void;
  onOpenFolder: (e: EntryInfo) => void;
  onError: (e: unknown) => void;
}) {
  const [details, setDetails] = useState<EntryDetails | null>(null);
  useEffect(() => {
    let live = true;
    setDetails(null);
    if (!loc.local) {
      // Its bytes are on another device: where it is there, from the synced rows.
      setDetails({ entry, path: `${loc.owner_name ?? "another device"}: ${loc.path}/${entry.path}` });
      return;
    }
    api.entryDetails(library, entry.id).then((d) => live && setDetails(d)).catch((e) => live && onError(e));
    return () => {
      live = false;
    };
  }, [api, library, entry.id, entry.path, loc.local, loc.owner_name, loc.path, onError]);
  const [broken, setBroken] = useState(false);
  useEffect(() => setBroken(false), [entry.id]);
  const download = [...downloads].reverse().find((d) => d.library === library && d.entry === entry.id);
  const saving = download?.state === "running" || download?.state === "paused";
  const save = () => {
    api.saveEntry(library, entry.id).catch(onError);
  };
  const file = entry.kind === "file";
  const device = loc.owner_name ?? "Its device";
  // Another member's original is fetched from it (or from a member holding a copy).
  const preview = file && (loc.local || ownerOnline) && !broken ? previewKind(entry.name) : null;
  const src = api.contentUrl("file", library, entry.id);
  const [mediaSrc, setMediaSrc] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setMediaSrc(null);
    if (preview === "video" || preview === "audio") api.mediaUrl(library, entry.id).then((u) => live && setMediaSrc(u)).catch(onError);
    return () => {
      live = false;
    };
  }, [api, library, entry.id, preview, onError]);
  return (
    <aside className="details" aria-label="Details">
      <div className="details-head">
        <h3 title={shown(entry.name)}>{shown(entry.name)}</h3>
        <button className="ghost small" onClick={onClose} aria-label="Close details">✕</button>
      </div>
      {preview === "image" && <img className="preview" src={src} alt={shown(entry.name)} onError={() => setBroken(true)} />}
      {preview === "video" && mediaSrc && <video className="preview" src={mediaSrc} controls preload="metadata" onError={() => setBroken(true)} />}
      {preview === "audio" && mediaSrc && <audio className="preview" src={mediaSrc} controls preload="metadata" onError={() => setBroken(true)} />}
      {file && !loc.local && previewKind(entry.name) && (!ownerOnline || broken) && (
        <p className="offline-note" role="status">{ownerOnline ? `${shown(device)} could not send the original.` : `${shown(device)} is offline: the original shows when it is back.`}</p>
      )}
      <dl>
        <dt>Kind</dt>
        <dd>{entry.kind === "dir" ? "Folder" : entry.kind === "symlink" ? "Symbolic link (not followed)" : entry.kind === "file" ? "File" : "Other"}</dd>
        {file && (
          <>
            <dt>Size</dt>
            <dd>{formatBytes(entry.size)} ({entry.size.toLocaleString()} bytes)</dd>
          </>
        )}
        <dt>Modified</dt>
        <dd>{new Date(entry.modified).toLocaleString()}</dd>
        {file && (
          <>
            <dt>Content id</dt>
            <dd><code className="cas" data-cas={entry.cas ?? ""}>{entry.cas ?? "not yet computed"}</code></dd>
          </>
        )}
        <dt>Where</dt>
        <dd className="where">{details ? shown(details.path) : "…"}</dd>
        {entry.error && (
          <>
            <dt>Problem</dt>
            <dd className="location-errors">{entry.error}</dd>
          </>
        )}
      </dl>
      <div className="details-actions">
        {entry.kind === "dir" ? (
          <button className="small" onClick={() => onOpenFolder(entry)}>Open folder</button>
        ) : (
          loc.local && <button className="small" onClick={() => onOpen(entry)}>Open</button>
        )}
        {loc.local && <button className="secondary small" onClick={() => api.openEntry(library, entry.id, true).catch(onError)}>Show in folder</button>}
        {!loc.local && (entry.kind === "file" || entry.kind === "dir") && (
          <button className="small" disabled={saving} onClick={save}>{saving ? `Saving… ${download && download.progress.total_bytes > 0 ? Math.floor((100 * download.progress.bytes) / download.progress.total_bytes) : 0}%` : "Save to this device"}</button>
        )}
      </div>
      {download?.state === "done" && <p className="muted small-text saved-note" role="status">Saved to {shown(download.path)}</p>}
      {download?.state === "failed" && <p className="location-errors small-text" role="status">Not saved: {shown(download.reason)}</p>}
    </aside>
  );
}

/** One library's contents: its locations (with index progress) and a folder's thumbnails. */
export function LibraryView({ state, api, library, onBack, onError }: {
  state: State;
  api: Api;
  library: string;
  onBack: () => void;
  onError: (e: unknown) => void;
}) {
  const lib = state.libraries.find((l) => l.id === library);
  const locations = state.locations[library] ?? [];
  const [picked, setPicked] = useState<string | null>(null);
  const [dir, setDir] = useState("");
  const [selected, setSelected] = useState<EntryInfo | null>(null);
  const [program, setProgram] = useState<EntryInfo | null>(null);
  const loc = locations.find((l) => l.id === picked) ?? locations[0];

  // A removed location (here or elsewhere) is no longer shown.
  useEffect(() => {
    if (picked && !locations.some((l) => l.id === picked)) setPicked(null);
  }, [picked, locations]);
  // Another location shown (picked, or the first after a removal): start at its top.
  const showing = useRef(loc?.id);
  useEffect(() => {
    if (showing.current === loc?.id) return;
    showing.current = loc?.id;
    setDir("");
    setSelected(null);
  }, [loc?.id]);

  const go = (d: string) => {
    setDir(d);
    setSelected(null);
  };
  // Another member's files open from its device once remote media lands; its folders open here.
  const open = (e: EntryInfo) =>
    e.kind === "dir"
      ? go(e.path)
      : !loc?.local
        ? setSelected(e)
        : api
          .openEntry(library, e.id, false)
          .then((r) => r === "is_program" && setProgram(e))
          .catch(onError);
  const answerProgram = (e: EntryInfo, reveal: boolean) => {
    setProgram(null);
    api.openEntry(library, e.id, reveal, !reveal).catch(onError);
  };
  const up = () => dir && go(dir.split("/").slice(0, -1).join("/"));

  const add = () =>
    api
      .pickFolder()
      .then((path) => (path ? api.addLocation(library, path) : null))
      .then((info) => info && setPicked(info.id))
      .catch(onError);

  if (!lib) {
    return (
      <section className="library-view">
        <div className="empty">
          <p>This library is gone.</p>
          <button onClick={onBack}>Back</button>
        </div>
      </section>
    );
  }

  return (
    <section className="library-view" aria-label={`Library ${lib.name}`} data-browsing={library}>
      <div className="lv-head">
        <button className="ghost" onClick={onBack}>← All</button>
        <h2>{lib.name}</h2>
        <span className="muted small-text">
          {locationsSummary(locations)}
        </span>
        <button className="secondary lv-add" onClick={add}>Add location…</button>
      </div>
      <div className={`lv-body${selected ? " with-details" : ""}`}>
        <div className="locations-by-device">
          {byDevice(locations).map((g) => {
            const up = g.local || online(state, g.owner);
            const pull = state.sync[`${library}/${g.owner}`];
            const pulling = pull?.state === "pulling" && pull.total > 0;
            return (
              <div className="device-group" key={g.owner} data-device={g.owner}>
                <h4 className="device-name" aria-label={`Device ${shown(g.name)}`}>
                  <span className={`dot ${up ? "connected" : "offline"}`} />
                  {shown(g.name)}
                  {!g.local && <span className="muted small-text">{up ? " · online" : ` · offline${g.syncedAt ? ` · ${syncedAgo(g.syncedAt, Date.now())}` : ""}`}</span>}
                </h4>
                {pulling && (
                  <div className="bar" role="progressbar" aria-label={`Syncing from ${shown(g.name)}`} aria-valuenow={Math.floor((pull.received * 100) / pull.total)}>
                    <div style={{ width: `${Math.min(100, (pull.received * 100) / pull.total)}%` }} />
                    <span className="small-text">{pull.received.toLocaleString()} / {pull.total.toLocaleString()} changes</span>
                  </div>
                )}
                <ul className="locations" aria-label={`Locations on ${shown(g.name)}`}>
                  {g.locations.map((l) => (
                    <LocationItem
                      key={l.id}
                      loc={l}
                      state={state}
                      library={library}
                      active={l.id === loc?.id}
                      api={api}
                      onPick={() => {
                        setPicked(l.id);
                        go("");
                      }}
                      onError={onError}
                    />
                  ))}
                </ul>
              </div>
            );
          })}
        </div>
        <div className="lv-main">
          {loc ? (
            <>
              <nav className="crumbs" aria-label="Folder">
                <button className="ghost small" onClick={() => go("")} aria-current={dir === "" ? "page" : undefined}>{shown(loc.name)}</button>
                {crumbs(dir).map(([name, path]) => (
                  <span key={path}>
                    <span className="sep">/</span>
                    <button className="ghost small" onClick={() => go(path)} aria-current={path === dir ? "page" : undefined}>{shown(name)}</button>
                  </span>
                ))}
              </nav>
              {!loc.online && loc.local && <p className="offline-note">This location is offline (its drive or folder is missing). What was indexed is kept; it comes back by itself.</p>}
              {!loc.local && !online(state, loc.owner) && (
                <p className="offline-note">
                  {shown(loc.owner_name ?? "Its device")} is offline: this is its index as of the last sync{loc.synced_at ? ` (${syncedAgo(loc.synced_at, Date.now())})` : ""}.
                </p>
              )}
              <EntryGrid
                key={`${loc.id}/${dir}`}
                api={api}
                library={library}
                location={loc.id}
                dir={dir}
                changed={state.changed[loc.id] ?? 0}
                indexing={loc.state !== "done" || !!running(state, loc.id)}
                selected={selected?.id ?? null}
                onSelect={setSelected}
                onOpen={open}
                onUp={up}
                onError={onError}
              />
            </>
          ) : (
            <div className="empty">
              <p>No locations yet.</p>
              <p className="muted">Add a folder: Ferry indexes it, keeps it current as files change, and makes thumbnails of its pictures.</p>
              <button onClick={add}>Add location…</button>
            </div>
          )}
        </div>
        {selected && loc && (
          <Details api={api} library={library} downloads={state.downloads} loc={loc} ownerOnline={loc.local || online(state, loc.owner)} entry={selected} onClose={() => setSelected(null)} onOpen={open} onOpenFolder={(e) => go(e.path)} onError={onError} />
        )}
        {program && (
          <RunProgramDialog entry={program} onRun={() => answerProgram(program, false)} onReveal={() => answerProgram(program, true)} onClose={() => setProgram(null)} />
        )}
      </div>
    </section>
  );
}
