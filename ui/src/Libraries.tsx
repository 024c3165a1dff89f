import { useState } from "react";
import type { Api } from "./api";
import type { LibraryInfo } from "./bindings";
import { MemberAccess } from "./MemberAccess";
import { locationsSummary, online, type State } from "./state";

function ago(unix: number | null | undefined): string {
  if (unix == null) return "never seen";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return "seen just now";
  if (s < 3600) return `seen ${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `seen ${Math.floor(s / 3600)} h ago`;
  return `seen ${Math.floor(s / 86400)} d ago`;
}

function LibraryCard({ lib, state, api, onError, onBrowse }: { lib: LibraryInfo; state: State; api: Api; onError: (e: unknown) => void; onBrowse: () => void }) {
  const [renaming, setRenaming] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [access, setAccess] = useState<string | null>(null);
  const members = lib.members.filter((m) => m.state === "member");
  const removed = lib.members.filter((m) => m.state === "removed");
  const locations = state.locations[lib.id] ?? [];
  return (
    <li className="library" aria-label={`Library ${lib.name}`} data-library={lib.id}>
      <div className="library-head">
        {renaming == null ? (
          <h3 className="library-name">{lib.name}</h3>
        ) : (
          <form
            className="row"
            onSubmit={(e) => {
              e.preventDefault();
              api.renameLibrary(lib.id, renaming).then(() => setRenaming(null)).catch(onError);
            }}
          >
            <input aria-label="New library name" value={renaming} autoFocus onChange={(e) => setRenaming(e.target.value)} onKeyDown={(e) => e.key === "Escape" && setRenaming(null)} />
            <button type="submit" className="small" disabled={!renaming.trim()}>Save</button>
          </form>
        )}
        <span className="muted small-text">{members.length} member{members.length === 1 ? "" : "s"}</span>
        {lib.pending && <span className="badge">joining…</span>}
        {lib.removed && <span className="badge bad">removed from this library</span>}
      </div>
      <ul className="members">
        {lib.members.map((m) => {
          const on = m.state === "member" && online(state, m.node);
          return (
            <li key={m.node} className={`member ${m.state}`} data-member={m.node}>
              <span className={`dot ${on ? "connected" : "offline"}`} title={on ? "online" : "offline"} />
              <span className="member-name">{m.name || m.short_id}</span>
              <code className="fp" title={`Fingerprint ${m.node}`}>{m.short_id}</code>
              <span className="member-state muted">
                {m.me ? "this device" : m.state === "removed" ? "removed" : on ? "online" : `offline · ${ago(m.last_seen)}`}
              </span>
              {!m.me && m.state === "member" && !lib.removed && (
                <span className="member-actions">
                  <button className="ghost small" onClick={() => setAccess(access === m.node ? null : m.node)} aria-expanded={access === m.node} aria-label={`Access ${m.name || m.short_id}`}>
                    Access…
                  </button>
                  <button className="ghost small" onClick={() => api.removeMember(lib.id, m.node).catch(onError)} aria-label={`Remove ${m.name || m.short_id}`}>
                    Remove
                  </button>
                </span>
              )}
              {access === m.node && <MemberAccess lib={lib} member={m} api={api} onError={onError} />}
            </li>
          );
        })}
      </ul>
      {removed.length > 0 && <p className="muted small-text">Removed nodes are refused by every member that has heard of it.</p>}
      <p className="library-contents muted small-text">
        {locations.length === 0
          ? "No folders in it yet."
          : locationsSummary(locations)}
      </p>
      <div className="library-actions">
        {!lib.removed && <button className="secondary small" onClick={onBrowse} aria-label={`Browse ${lib.name}`}>Browse</button>}
        {!lib.removed && renaming == null && <button className="ghost small" onClick={() => setRenaming(lib.name)}>Rename</button>}
        {confirmDelete ? (
          <>
            <span className="small-text">Leave and delete it on this device?</span>
            <button className="danger small" onClick={() => api.deleteLibrary(lib.id).catch(onError)}>Delete</button>
            <button className="ghost small" onClick={() => setConfirmDelete(false)}>Keep</button>
          </>
        ) : (
          <button className="ghost small" onClick={() => setConfirmDelete(true)}>{lib.removed ? "Delete" : "Leave…"}</button>
        )}
      </div>
    </li>
  );
}

export function Libraries({ state, api, onError, onBrowse }: { state: State; api: Api; onError: (e: unknown) => void; onBrowse: (library: string) => void }) {
  const [name, setName] = useState("");
  return (
    <section className="panel" aria-labelledby="libraries">
      <div className="panel-head">
        <h2 id="libraries">Libraries</h2>
        <form
          className="connect"
          onSubmit={(e) => {
            e.preventDefault();
            if (!name.trim()) return;
            api.createLibrary(name.trim()).then(() => setName("")).catch(onError);
          }}
        >
          <label htmlFor="new-library">New library</label>
          <input id="new-library" placeholder="Family photos" value={name} onChange={(e) => setName(e.target.value)} />
          <button type="submit" className="secondary" disabled={!name.trim()}>Create</button>
        </form>
      </div>
      {state.libraries.length === 0 ? (
        <div className="empty small">
          <p>No libraries yet.</p>
          <p className="muted">A library is a set of your devices that trust each other. Create one, then pair a nearby device into it.</p>
        </div>
      ) : (
        <ul className="libraries">
          {state.libraries.map((l) => <LibraryCard key={l.id} lib={l} state={state} api={api} onError={onError} onBrowse={() => onBrowse(l.id)} />)}
        </ul>
      )}
    </section>
  );
}
